"""Ending background tasks for certain: :func:`cancel_and_wait`.

One ``Task.cancel()`` is not always enough to end a task. A library may absorb the
cancellation: redis-py 8's asyncio client does when the cancel lands just as a reply
arrives (the command returns its result and the task runs on, into its next wait). A
server whose shutdown cancelled such a task once would then wait on it for good, and its
connections would never be closed. :func:`cancel_and_wait` cancels again until the task
has ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["CANCEL_TIMEOUT_S", "cancel_and_wait"]

log = logging.getLogger(__name__)

#: How long :func:`cancel_and_wait` keeps cancelling a task before it gives up (s).
#: A task that ignores cancellations this long is stuck, not busy; 5 s is the project's
#: choice (the server's own shutdown grace, ``close_grace_s``, is of the same order).
CANCEL_TIMEOUT_S = 5.0
#: The pause between two cancellations of a task that is still running (s).
_RECANCEL_S = 0.05


async def cancel_and_wait(
    task: asyncio.Future[Any] | None, timeout_s: float = CANCEL_TIMEOUT_S
) -> bool:
    """Cancel ``task`` and wait until it has ended, cancelling again every 50 ms.

    ``task``: a task (or future) of the running loop, or ``None`` (nothing to do).
    ``timeout_s``: how long to keep trying (s; default :data:`CANCEL_TIMEOUT_S`).

    Returns ``True`` once the task is done (however it ended: its exception, if any, is
    retrieved and not raised), ``False`` if it was still running after ``timeout_s``
    (a warning is logged). Raises ``CancelledError`` only if the *caller* is cancelled.
    """
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        if loop.time() >= deadline:
            log.warning("a task did not end within %.1f s of being cancelled: %r", timeout_s, task)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_S)
    if not task.cancelled():
        task.exception()  # retrieved: never reported as "exception was never retrieved"
    return True
