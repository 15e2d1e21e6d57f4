"""Structlog processors that keep secret material out of log lines: one blanks the values of
sensitive keys at any nesting depth, one renders exceptions without the messages of foreign code.

This is defence in depth. The code must not log secret material in the first place; these
processors catch the mistake of passing, say, a whole Vault response, a login reply or an unseal
reply to a log call, or of logging an exception whose message quotes the data it choked on.

Keys are judged by their *last word* (split at ``_``, ``-``, ``.`` and camelCase), so a new field
is covered without being listed: ``vault_token``, ``clientToken``, ``X-Vault-Token``,
``private_key``, ``unseal_keys_b64``, ``keys_hex``, ``identity`` all end in a sensitive word,
while ``token_ttl``, ``secret_name`` or ``share_count`` do not. A field that names a sensitive
thing rather than holding it is given a name that ends otherwise (``data_key_names``, not
``data_keys``): the pattern is never weakened for a field's sake.

Exceptions are rendered here, *before* redaction, and only the messages of this project's own
exceptions are kept (they are written to name objects and fields, never values). A foreign
exception's message may quote its input (``invalid literal for int() with base 10:
's3cr3t'``, a ``KeyError`` of a secret, a library error carrying a response body), so only its
type and the frames are shown: where it happened, not what it was given.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any

REDACTED = "[REDACTED]"

#: A key whose last word is one of these is sensitive (case-insensitive).
SENSITIVE_WORDS: frozenset[str] = frozenset(
    {
        "token", "tokens", "jwt", "accessor",
        "key", "keys", "secret", "secrets", "password", "passwords", "passphrase",
        "share", "shares", "identity", "identities", "credential", "credentials",
        "authorization", "cookie",
        # Encodings name their content's form, not what it is: unseal_keys_b64, keys_hex.
        "b64", "base64", "hex",
    }
)

#: Sensitive keys whose last word is not sensitive by itself (matched whole, case-insensitive).
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "data",  # a Secret's or a KV read's data
        "secret_id",  # an AppRole credential
        "string_data", "stringdata",
    }
)

#: Packages whose exception messages are shown (they carry names and fields, never values).
OWN_PACKAGES: tuple[str, ...] = ("plumbing", "syncd", "unsealer")

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")


def last_word(key: str) -> str:
    """The last word of ``key``, lower-cased: ``unseal_keys_b64`` -> ``b64``."""
    words = _WORDS.findall(key)
    return words[-1].lower() if words else key.lower()


def is_sensitive(key: object, *, extra_keys: frozenset[str] = frozenset()) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return (lowered in SENSITIVE_KEYS or lowered in extra_keys
            or last_word(key) in SENSITIVE_WORDS)


class Redactor:
    """Replace the values of sensitive keys before rendering.

    ``extra_keys`` are added to :data:`SENSITIVE_KEYS`; a caller registers the names of its own
    sensitive fields this way.
    """

    def __init__(self, *, extra_keys: Iterable[str] = ()) -> None:
        self._extra = frozenset(k.lower() for k in extra_keys)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name in list(event_dict):
            event_dict[name] = self._scrub(name, event_dict[name])
        return event_dict

    def _scrub(self, name: object, value: Any) -> Any:
        if is_sensitive(name, extra_keys=self._extra):
            return REDACTED
        if isinstance(value, Mapping):
            return {k: self._scrub(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(None, v) for v in value]
        return value


def render_exceptions(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace ``exc_info`` by ``exception``: the traceback, with foreign messages withheld.

    In place of structlog's ``format_exc_info``; it must run before :class:`Redactor`, so that
    nothing rendered after redaction can bring a value back.
    """
    exc_info = event_dict.pop("exc_info", None)
    error = _exception_of(exc_info)
    if error is not None:
        event_dict["exception"] = describe_exception(error)
    return event_dict


def _exception_of(exc_info: object) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    if exc_info:  # True: the exception being handled
        return sys.exc_info()[1]
    return None


def describe_exception(error: BaseException) -> str:
    """The traceback of ``error`` and its causes, as Python prints it, minus foreign messages."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(_one(current, current.__traceback__) + link)
        if current.__cause__ is not None:
            current, link = current.__cause__, (
                "\nThe above exception was the direct cause of the following exception:\n\n")
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, (
                "\nDuring handling of the above exception, another exception occurred:\n\n")
        else:
            current = None
    return "".join(reversed(parts)).rstrip("\n")


def _one(error: BaseException, tb: TracebackType | None) -> str:
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    if kind.__module__.split(".")[0] in OWN_PACKAGES:
        text = str(error)
        line = f"{name}: {text}" if text else name
    else:
        line = f"{name}: (message withheld: it may quote data; the frames show where)"
    frames = "".join(traceback.format_list(traceback.extract_tb(tb))) if tb else ""
    head = "Traceback (most recent call last):\n" if frames else ""
    if isinstance(error, BaseExceptionGroup):  # a TaskGroup's: what each task raised
        for index, inner in enumerate(error.exceptions, 1):
            nested = describe_exception(inner).replace("\n", "\n  | ")
            line += f"\n  +-- {index} --\n  | {nested}"
    return f"{head}{frames}{line}\n"
