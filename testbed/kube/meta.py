"""Small helpers shared by every layer: timestamps, JSON, copying, boolean query parsing.

Stored objects are treated as immutable once committed (readers share them without copying, which
is what makes the emulation fast), so anything that wants to change one starts from ``clone()``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import string
import uuid
from typing import Any, TypeVar

Obj = dict[str, Any]
T = TypeVar("T")

_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String alphabet (no vowels)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(when: dt.datetime | None = None) -> str:
    """Second precision with a ``Z``, as metav1.Time marshals."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(when: dt.datetime | None = None) -> str:
    """metav1.MicroTime: six fractional digits."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Field names that hold metav1.Time / metav1.MicroTime in the built-in types. The real server
# re-encodes them on every write, so "2024-01-01T00:00:00.123456+00:00" (what kubernetes-asyncio
# sends for a datetime) is stored and answered as "2024-01-01T00:00:00Z".
TIME_FIELDS = frozenset(
    {
        "creationTimestamp",
        "deletionTimestamp",
        "firstTimestamp",
        "lastTimestamp",
        "lastTransitionTime",
        "lastUpdateTime",
        "lastProbeTime",
        "lastHeartbeatTime",
        "startedAt",
        "finishedAt",
        "startTime",
        "time",
        "expirationTimestamp",
    }
)
MICRO_TIME_FIELDS = frozenset({"acquireTime", "renewTime", "eventTime", "lastObservedTime"})


def normalize_times(value: Any) -> None:
    """Re-encode time fields in place the way the apiserver's JSON serializer would."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(sub, str) and (key in TIME_FIELDS or key in MICRO_TIME_FIELDS):
                parsed = parse_time(sub)
                if parsed is not None:
                    parsed = parsed.astimezone(dt.UTC)
                    value[key] = micro_time(parsed) if key in MICRO_TIME_FIELDS else rfc3339(parsed)
            elif isinstance(sub, (dict, list)):
                normalize_times(sub)
    elif isinstance(value, list):
        for item in value:
            normalize_times(item)


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def random_hex(length: int) -> str:
    return "".join(secrets.choice(string.hexdigits[:16]) for _ in range(length))


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def dump_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def clone(obj: T) -> T:
    """A deep copy of JSON data (faster than copy.deepcopy for plain dict/list trees)."""
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}  # type: ignore[return-value]
    if isinstance(obj, list):
        return [clone(v) for v in obj]  # type: ignore[return-value]
    return obj


def parse_bool(text: str | None) -> bool:
    """Go's strconv.ParseBool: kubernetes-asyncio sends ``True``."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def human_age(seconds: float) -> str:
    """apimachinery duration.HumanDuration, as the server's Table printers emit Age."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rem = days % 365
        return f"{days // 365}y{rem}d" if rem else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def age_of(obj: Obj) -> str:
    created = parse_time(meta(obj).get("creationTimestamp"))
    if created is None:
        return "<unknown>"
    return human_age((now() - created).total_seconds())
