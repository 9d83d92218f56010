"""rtsim — a lab for learning and deciding how to build real-time web features.

``rtsim.core`` holds the sans-I/O logic (no sockets, no clocks, no global randomness),
``rtsim.sim`` drives it with SimPy time, ``rtsim.live`` with the asyncio event loop,
and ``rtsim.lab`` holds what the notebooks need on top.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
