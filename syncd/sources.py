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

Messages carry the mount, path and status, never a value from the secret.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from plumbing.vault import VaultClient, VaultTransportError
from syncd.rendering import KVType
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


class VaultSealed(SourceError):
    reason = "VaultSealed"


class VaultUnavailable(SourceError):
    reason = "VaultUnavailable"


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
        raise VaultUnavailable(f"{where}: Vault unreachable: {exc}") from None
    status = answer.status
    body = _json(answer.body)
    if status == 200:
        return _parse(body, kv_type=kv_type, where=where)
    if status == 404:
        raise _not_found(body if isinstance(body, Mapping) else {}, where=where,
                         version=version)
    raise refusal(status=status, errors=_errors_of(body), where=where)


_NOT_JSON = object()


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return _NOT_JSON


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
        return VaultUnavailable(f"{where}: Vault answered 503: {errors}")
    if status >= 500 or status == 429:
        return VaultUnavailable(f"{where}: Vault answered {status}: {errors}")
    if 300 <= status < 400:
        return VaultUnavailable(f"{where}: {REDIRECT_REFUSED.format(status=status)}")
    return SourceError(f"{where}: Vault answered {status}: {errors}")


def _parse(body: object, *, kv_type: KVType, where: str) -> SourceData:
    if not isinstance(body, Mapping):
        raise SourceError(f"{where}: Vault's answer is not a JSON object")
    payload = body.get("data")
    if kv_type == "kv-v1":
        if payload is None and body.get("warnings"):
            raise SourceWrongType(f"{where}: the mount is kv-v2; set spec.type to kv-v2")
        return SourceData(data=payload or {}, raw=payload or {})
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), Mapping):
        raise SourceError(f"{where}: unexpected response shape (is the mount kv-v1?)")
    metadata = payload.get("metadata") or {}
    return SourceData(
        data=payload["data"],
        raw=payload,
        version=int(metadata.get("version") or 0) or None,
        custom_metadata=dict(metadata.get("custom_metadata") or {}),
    )


def _not_found(body: Mapping[str, Any], *, where: str, version: int) -> SourceError:
    metadata = ((body.get("data") or {}).get("metadata")) or {}
    warnings = " ".join(str(w) for w in body.get("warnings") or [])
    if "Invalid path for a versioned K/V" in warnings:
        # What a kv-v2 mount answers (404 and this warning) to a kv-v1 read.
        return SourceWrongType(f"{where}: the mount is kv-v2; set spec.type to kv-v2")
    if metadata:
        number = int(metadata.get("version") or version or 0)
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
