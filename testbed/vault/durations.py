"""Vault's duration parameters: integers are seconds, strings are Go durations ("1h30m", "90s").

Vault accepts both forms on every TTL-like field (``ttl``, ``token_max_ttl``,
``delete_version_after`` …) and renders some of them back as Go duration strings ("0s", "1h0m0s").
"""

from __future__ import annotations

import re

from testbed.vault.errors import VaultError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(value: object, *, field: str) -> int:
    """Seconds from an int, a numeric string or a Go duration string; 400 on anything else."""
    return int(parse_duration_seconds(value, field=field))


def parse_duration_seconds(value: object, *, field: str) -> float:
    """:func:`parse_duration` without rounding (``500ms`` is 0.5, as ParseDurationSecond)."""
    if isinstance(value, bool):
        raise VaultError(400, f"error converting input {value} for field {field!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        if re.fullmatch(r"-?\d+", text):
            return float(text)
        sign = -1 if text.startswith("-") else 1
        text = text.lstrip("+-")
        position = 0
        total = 0.0
        for match in _PART.finditer(text):
            if match.start() != position:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            position = match.end()
        if position == len(text) and position > 0:
            return sign * total
    raise VaultError(400, f"error converting input {value!r} for field {field!r}: invalid duration")


def go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String()`` for whole seconds: 0 → "0s", 3600 → "1h0m0s"."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"
