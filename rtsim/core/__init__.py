"""Sans-I/O logic shared by the simulation and the live server.

Rules for everything in this package: no sockets, no ``asyncio``, no ``simpy``, no
``time.time()``, no global random state. Time comes in as an argument (``now``, seconds),
randomness as an injected :class:`numpy.random.Generator`, and a timer is a *request*
(an action saying "wake me at t") that the caller schedules.
"""
