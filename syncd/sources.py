"""Reading one KV secret from Vault: one request per refresh, every outcome named.

A kv-v2 data read returns the version with the data, so a refresh costs exactly one Vault
request; there is no separate metadata check. Every failure is its own exception type, because
the controller answers each differently, and none of them may cost the user their Secret:

- :class:`SourceMissing` (404, no such path): keep the Secret, say so.
- :class:`SourceDeleted` (404 with metadata: the version asked for — the latest, unless pinned
  — is soft-deleted or destroyed). VSO users lost their data this way (VSO #756): the 404 body
  carries ``data: null`` and VSO wrote an empty Secret. We keep the last good data.
- :class:`SourceForbidden` (403), :class:`VaultSealed` (503), :class:`VaultUnavailable`
  (timeouts, resets, other 5xx): back off, keep the data.
- :class:`SourceMalformed`: the answer is not a KV read's (not UTF-8, not JSON, cut short,
  ``data.data`` not an object, a version that is no number, a ``\\u`` escape that is no
  character): the field is named, the data kept. Types Vault allows in a secret (null,
  numbers, nested objects) are not errors: :mod:`syncd.rendering` writes them as VSO does.

Messages carry the mount, path and status, never a value from the secret.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from plumbing.vault import VaultClient, VaultTransportError
from syncd import gojson
from syncd.rendering import KVType
from syncd.spec_parts import json_type
from syncd.vault_clients import REDIRECT_REFUSED


class SourceError(Exception):
    """Reading the source failed; the destination must be left as it is."""

    reason = "VaultReadFailed"
    retry = True


class SourceMissing(SourceError):
    reason = "SecretNotFound"


class SourceDeleted(SourceError):
    reason = "SourceDeleted"

    def __init__(self, message: str, *, version: int, destroyed: bool) -> None:
        super().__init__(message)
        self.version = version
        self.destroyed = destroyed


class SourceForbidden(SourceError):
    reason = "VaultPermissionDenied"


class SourceWrongType(SourceError):
    reason = "WrongKVType"
    retry = False


class SourceMalformed(SourceError):
    """Vault's answer is not what a KV read answers (not JSON, wrong types...): the message
    names the field and what it holds, by type, never by value."""

    reason = "InvalidVaultResponse"


class VaultSealed(SourceError):
    reason = "VaultSealed"


class VaultUnavailable(SourceError):
    """No answer (``transport`` names why, as :class:`~plumbing.vault.VaultTransportError`
    does), or a 5xx/429/redirect (``status``): :mod:`syncd.outages` tells them apart."""

    reason = "VaultUnavailable"

    def __init__(self, message: str, *, status: int | None = None,
                 transport: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.transport = transport


@dataclass(frozen=True)
class SourceData:
    """A successful read. ``data`` and ``raw`` are secret; they are never shown in a repr."""

    data: Mapping[str, Any] = field(repr=False)
    raw: Mapping[str, Any] = field(repr=False)
    version: int | None = None
    custom_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)


#: What a path segment may hold unquoted (RFC 3986 pchar); ``%`` is quoted, so the path Vault
#: sees is the one in the spec, and no ``%2e%2e`` becomes a ``..`` on the way.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _location(kv_type: KVType, mount: str, path: str) -> str:
    mount, path = mount.strip("/"), path.strip("/")
    location = f"v1/{mount}/data/{path}" if kv_type == "kv-v2" else f"v1/{mount}/{path}"
    return urllib.parse.quote(location, safe=_PATH_SAFE)


def errors(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return _errors_of(body)


def _errors_of(body: object) -> str:
    """Vault's ``errors`` list, joined and cut short (its messages name paths, never values)."""
    found = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(found, list):
        return ""
    return "; ".join(str(e) for e in found)[:300]


async def read(
    client: VaultClient, *, kv_type: KVType, mount: str, path: str, version: int = 0,
    namespace: str | None = None,
) -> SourceData:
    """Read the secret: one request on the event loop (``client``'s aiohttp path).

    ``namespace`` is the Vault (Enterprise) namespace of the mount, sent as
    ``X-Vault-Namespace``; None for the root namespace.
    """
    where = f"{kv_type} {mount.strip('/')}/{path.strip('/')}"
    if namespace:
        where = f"{where} in Vault namespace {namespace}"
    query = {"version": str(version)} if kv_type == "kv-v2" and version else None
    try:
        answer = await client.request_async("GET", _location(kv_type, mount, path),
                                            namespace=namespace, query=query)
    except VaultTransportError as exc:
        raise VaultUnavailable(f"{where}: Vault unreachable: {exc}",
                               transport=str(exc)) from None
    status = answer.status
    body = _json(answer.body)
    if status == 200:
        return _parse(body, kv_type=kv_type, where=where)
    if status == 404:
        raise _not_found(body if isinstance(body, Mapping) else {}, where=where,
                         version=version)
    errors = _errors_of(body)
    if client.token:  # in case an answer ever echoes it (cut out as a login's credentials are)
        errors = errors.replace(client.token, "<token>")
    raise refusal(status=status, errors=errors, where=where)


class _NotJSON:
    """Why an answer could not be decoded (never its content)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _json(body: bytes) -> object:
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        return _NotJSON(f"is not UTF-8 (byte {exc.start} of {len(body)})")
    try:
        decoded = gojson.loads(text)  # numbers as Vault wrote them, as VSO keeps them
    except json.JSONDecodeError as exc:
        return _NotJSON(f"is not JSON ({exc.msg.lower()}: character {exc.pos} of"
                        f" {len(text)}; cut short?)")
    if _SURROGATE_ESCAPE.search(text):  # rare: walk the answer only then
        try:
            _check_text(decoded, field="")
        except ValueError as exc:
            return _NotJSON(str(exc))
    return decoded


#: A JSON escape of half of a UTF-16 surrogate pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def failure(response: requests.Response, *, where: str) -> SourceError:
    """The error for a refusal of any Vault request (403, 503, other 5xx, redirects...)."""
    return refusal(status=response.status_code, errors=errors(response), where=where)


def refusal(*, status: int, errors: str, where: str) -> SourceError:
    """The error for ``status`` (not 200, not a KV read's 404) with Vault's ``errors``."""
    if status == 403:
        return SourceForbidden(f"{where}: permission denied (check the Vault policy)")
    if status == 503:
        if "sealed" in errors.lower():
            return VaultSealed(f"{where}: Vault is sealed")
        return VaultUnavailable(f"{where}: Vault answered 503: {errors}", status=status)
    if status >= 500 or status == 429:
        return VaultUnavailable(f"{where}: Vault answered {status}: {errors}", status=status)
    if 300 <= status < 400:
        return VaultUnavailable(f"{where}: {REDIRECT_REFUSED.format(status=status)}",
                                status=status)
    return SourceError(f"{where}: Vault answered {status}: {errors}")


def _parse(body: object, *, kv_type: KVType, where: str) -> SourceData:
    if isinstance(body, _NotJSON):
        raise SourceMalformed(f"{where}: Vault's answer {body.problem}")
    if not isinstance(body, Mapping):
        raise SourceMalformed(f"{where}: Vault's answer is {json_type(body)}, not a JSON object")
    payload = body.get("data")
    if kv_type == "kv-v1":
        if payload is None and body.get("warnings"):
            raise SourceWrongType(f"{where}: the mount is kv-v2; set spec.type to kv-v2")
        payload = {} if payload is None else payload
        if not isinstance(payload, Mapping):
            raise SourceMalformed(f"{where}: Vault's answer: data is {json_type(payload)}, not an"
                                  " object")
        return SourceData(data=payload, raw=payload)
    if not isinstance(payload, Mapping):
        raise SourceMalformed(f"{where}: Vault's answer: data is {json_type(payload)}, not an"
                              " object (is the mount kv-v1?)")
    secrets = payload.get("data")
    if not isinstance(secrets, Mapping):
        raise SourceMalformed(f"{where}: Vault's answer: data.data is {json_type(secrets)}, not an"
                              " object (is the mount kv-v1?)")
    metadata = payload.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise SourceMalformed(f"{where}: Vault's answer: data.metadata is {json_type(metadata)},"
                              " not an object")
    version = metadata.get("version")
    if version is not None and (type(version) is not int or version < 0):
        raise SourceMalformed(f"{where}: Vault's answer: data.metadata.version is"
                              f" {json_type(version)}, not a version number")
    custom = metadata.get("custom_metadata")
    custom = {} if custom is None else custom
    if not isinstance(custom, Mapping) or not all(
            isinstance(v, str) for v in custom.values()):
        raise SourceMalformed(f"{where}: Vault's answer: data.metadata.custom_metadata is"
                              f" {json_type(custom)}, not an object of strings")
    return SourceData(data=secrets, raw=payload, version=version or None,
                      custom_metadata=dict(custom))



def _check_text(value: object, *, field: str) -> None:
    """Refuse a string that is no text: JSON may escape half of a UTF-16 pair (``\\ud800``),
    which decodes to a str no UTF-8 can encode; ``ValueError`` names where."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"holds a \\u escape that is no character (half of a UTF-16"
                             f" surrogate pair) in {field or 'itself'}") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_text(key, field=f"a key of {field or 'the top level'}")
            name = _printable(key)
            _check_text(item, field=f"{field}.{name}" if field else name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, field=f"{field}[{i}]")


def _printable(key: str) -> str:
    return key.encode(errors="backslashreplace").decode()


def _not_found(body: Mapping[str, Any], *, where: str, version: int) -> SourceError:
    data = body.get("data")
    metadata = (data.get("metadata") if isinstance(data, Mapping) else None) or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    warnings = body.get("warnings")
    warnings = " ".join(str(w) for w in warnings) if isinstance(warnings, list) else ""
    if "Invalid path for a versioned K/V" in warnings:
        # What a kv-v2 mount answers (404 and this warning) to a kv-v1 read.
        return SourceWrongType(f"{where}: the mount is kv-v2; set spec.type to kv-v2")
    if metadata:
        found = metadata.get("version")
        number = found if type(found) is int and found >= 0 else version
        destroyed = bool(metadata.get("destroyed"))
        state = "destroyed" if destroyed else "deleted"
        which = f"version {number}" if version else f"the latest version ({number})"
        return SourceDeleted(
            f"{where}: {which} is {state} in Vault; keeping the last synced data",
            version=number,
            destroyed=destroyed,
        )
    which = f" version {version}" if version else ""
    return SourceMissing(f"{where}{which}: not found in Vault")
