"""Keep secrets out of core dumps: both services hold tokens and unseal shares in memory.

A crash (or ``kill -QUIT``, or ``gcore`` by someone with ptrace rights) would otherwise write
the process's memory, shares and tokens included, to wherever ``core_pattern`` points: often a
file readable by more people than the custody config allows. So each service, first thing:

- sets ``RLIMIT_CORE`` to 0 (soft and hard: it cannot be raised again without privilege);
- on Linux, clears the *dumpable* flag (``prctl(PR_SET_DUMPABLE, 0)``): no core even where
  ``core_pattern`` pipes to a handler that ignores the limit, and no ``ptrace`` attach or
  ``/proc/PID/mem`` read by other processes of the same user.

Best effort: where a call is unavailable (not Linux, no libc) the rest still applies, and the
result says what held, for the start-up log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def disable_core_dumps() -> dict[str, bool]:
    """No core dumps, not dumpable; which of the two took effect (never raises)."""
    done = {"rlimit_core": False, "not_dumpable": False}
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        done["rlimit_core"] = True
    except (OSError, ValueError):
        pass
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            done["not_dumpable"] = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    return done
