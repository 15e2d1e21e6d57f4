"""Durations as people write them in the specs: ``30s``, ``1.5h``, ``1m30s``.

VSO declares ``refreshAfter`` with the pattern ``^([0-9]+(\\.[0-9]+)?(s|m|h))$`` and hands the
text to Go's ``time.ParseDuration``. We accept what that pattern accepts, and, as ParseDuration
does, a sequence of such terms (``1m30s``), so the CRD pattern is VSO's with the term repeated:
every VSO manifest still validates, and means the same length of time here. Units stop at
seconds on purpose; a refresh or a Vault timeout below a second is a typo, not a wish.
"""

from __future__ import annotations

import re

#: The CRD ``pattern`` of every duration field; the tests check the CRDs use exactly this.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"

_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
# Go's time.Duration is an int64 of nanoseconds; anything longer fails to parse there.
_GO_MAX_SECONDS = (2**63 - 1) / 1e9


class DurationError(ValueError):
    """A duration text that is not ``<number><unit>`` terms, or is out of range."""


def parse_duration(text: str) -> float:
    """The length of ``text`` in seconds.

    ``text`` is one or more terms of a decimal number and a unit ``s``, ``m`` or ``h``, with no
    sign or spaces: ``30s``, ``1.5h``, ``1h30m``.
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise DurationError(
            f"invalid duration {text!r}: use a number and a unit s, m or h, "
            "for example 30s, 1.5h or 1m30s"
        )
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _TERM.findall(text))
    if seconds > _GO_MAX_SECONDS:
        raise DurationError(f"duration {text!r} is too long (at most about 292 years)")
    return seconds
