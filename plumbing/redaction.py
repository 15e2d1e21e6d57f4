"""A structlog processor that blanks values under sensitive keys, at any nesting depth.

This is defence in depth. The code must not log secret material in the first place; this
processor catches the mistake of passing, say, a whole Vault response or a login reply to a log
call. Keys are matched case-insensitively and exactly (``token`` and ``client_token`` are both
listed), so ``token_ttl`` or ``data_keys`` stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

REDACTED = "[REDACTED]"

SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "token",
        "jwt",
        "key",
        "keys",
        "share",
        "shares",
        "password",
        "secret",
        "data",
        "client_token",
        "root_token",
        "keys_base64",
        "secret_id",
        "authorization",
        "x-vault-token",
    }
)


class Redactor:
    """Replace the values of sensitive keys before rendering.

    ``extra_keys`` are added to :data:`SENSITIVE_KEYS`; a caller registers the names of its own
    sensitive fields this way.
    """

    def __init__(self, *, extra_keys: Iterable[str] = ()) -> None:
        self._keys = SENSITIVE_KEYS | {k.lower() for k in extra_keys}

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name in list(event_dict):
            event_dict[name] = self._scrub(name, event_dict[name])
        return event_dict

    def _scrub(self, name: object, value: Any) -> Any:
        if isinstance(name, str) and name.lower() in self._keys:
            return REDACTED
        if isinstance(value, Mapping):
            return {k: self._scrub(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(None, v) for v in value]
        return value
