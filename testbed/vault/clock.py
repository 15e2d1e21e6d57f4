"""An injectable clock, so tests can expire tokens and KV versions without sleeping.

Every time-dependent decision in the emulation (token expiry, ``delete_version_after``,
timestamps in responses) reads :class:`Clock`; :meth:`Clock.advance` moves it forward.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock time plus an offset that tests can push forward."""

    def __init__(self, *, offset: float = 0.0) -> None:
        self._offset = offset

    def now(self) -> float:
        """Seconds since the epoch, as seen by the emulation."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulation's time forward (never back: Vault state assumes monotonic time)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


def rfc3339(timestamp: float) -> str:
    """Go's ``time.RFC3339Nano`` rendering in UTC: fractional seconds with trailing zeros cut."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"
