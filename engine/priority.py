"""Background work at a lower CPU priority than the requests it runs beside.

A backup or restore keeps several cores busy (copy, zstd workers, checksums) while the
table keeps serving; at equal priority the scheduler gives the foreground writers only
their share of the cores. Raising the *calling thread's* nice value (Linux: nice is per
thread, and threads started from it — thread pools, libzstd's workers — inherit it) lets
foreground threads win the CPU whenever they want it, the way pgBackRest is usually run
under ``nice``. Elsewhere this is a no-op.
"""

from __future__ import annotations

import os
import sys
import threading

#: The default nice increment of background threads (0 = same priority as requests).
DEFAULT_BACKGROUND_NICE = 10


def lower_thread_priority(increment: int) -> bool:
    """Raise the calling thread's nice value by ``increment``; True if it changed.

    Never raises: an unprivileged process can always lower its priority, and where the
    call is not available (not Linux) the work simply runs at normal priority.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except (OSError, AttributeError):
        return False
    return True
