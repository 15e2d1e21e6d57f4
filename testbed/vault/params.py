"""Decoding request parameters the way Vault's field schema does.

Vault coerces loosely typed input: ``"true"`` is a bool, ``"5"`` an int, ``"a,b"`` a list of
strings. Services and hvac send a mix of both forms, so the emulation coerces the same way and
answers 400 with Vault's wording when a value cannot be coerced.
"""

from __future__ import annotations

from typing import Any

from testbed.vault.durations import parse_duration
from testbed.vault.errors import VaultError


def _fail(field: str, value: object, kind: str) -> VaultError:
    return VaultError(400, f"error converting input {value!r} for field {field!r}: expected {kind}")


def get_str(data: dict[str, Any], field: str, default: str = "") -> str:
    value = data.get(field)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _fail(field, value, "string")


def get_bool(data: dict[str, Any], field: str, default: bool = False) -> bool:
    value = data.get(field)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "t"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "f", ""):
        return False
    if isinstance(value, int):
        return value != 0
    raise _fail(field, value, "bool")


def get_int(data: dict[str, Any], field: str, default: int = 0) -> int:
    value = data.get(field)
    if value is None:
        return default
    if isinstance(value, bool):
        raise _fail(field, value, "int")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip() or "0")
        except ValueError:
            raise _fail(field, value, "int") from None
    raise _fail(field, value, "int")


def get_list(data: dict[str, Any], field: str) -> list[str] | None:
    """A list of strings from a JSON list or a comma-separated string; ``None`` when absent."""
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    raise _fail(field, value, "list of strings")


def get_duration(data: dict[str, Any], field: str, default: int = 0) -> int:
    value = data.get(field)
    if value is None:
        return default
    return parse_duration(value, field=field)


def get_str_map(data: dict[str, Any], field: str) -> dict[str, str] | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(field, value, "map")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}
