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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hvac
import requests

from plumbing.vault import VaultPool
from syncd.rendering import KVType
from syncd.vault_clients import REDIRECT_REFUSED, namespace_header


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


def _location(kv_type: KVType, mount: str, path: str) -> str:
    mount, path = mount.strip("/"), path.strip("/")
    return f"v1/{mount}/data/{path}" if kv_type == "kv-v2" else f"v1/{mount}/{path}"


def errors(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    return "; ".join(str(e) for e in errors)[:300]


def read_blocking(
    client: hvac.Client, *, kv_type: KVType, mount: str, path: str, version: int = 0,
    namespace: str | None = None,
) -> SourceData:
    """Read the secret (blocking: call it through :class:`VaultPool`).

    ``namespace`` is the Vault (Enterprise) namespace of the mount, sent as
    ``X-Vault-Namespace``; None for the root namespace.
    """
    where = f"{kv_type} {mount.strip('/')}/{path.strip('/')}"
    if namespace:
        where = f"{where} in Vault namespace {namespace}"
    params = {"version": str(version)} if kv_type == "kv-v2" and version else None
    try:
        response: requests.Response = client.adapter.request(
            "GET", _location(kv_type, mount, path), params=params, raise_exception=False,
            headers=namespace_header(namespace),
        )
    except requests.RequestException as exc:
        raise VaultUnavailable(f"{where}: Vault unreachable: {type(exc).__name__}") from None
    status = response.status_code
    if status == 200:
        return _parse(response, kv_type=kv_type, where=where)
    if status == 404:
        raise _not_found(response, where=where, version=version)
    raise failure(response, where=where)


def failure(response: requests.Response, *, where: str) -> SourceError:
    """The error for a refusal of any Vault request (403, 503, other 5xx, redirects...)."""
    status = response.status_code
    if status == 403:
        return SourceForbidden(f"{where}: permission denied (check the Vault policy)")
    if status == 503:
        if "sealed" in errors(response).lower():
            return VaultSealed(f"{where}: Vault is sealed")
        return VaultUnavailable(f"{where}: Vault answered 503: {errors(response)}")
    if status >= 500 or status == 429:
        return VaultUnavailable(f"{where}: Vault answered {status}: {errors(response)}")
    if 300 <= status < 400:
        return VaultUnavailable(f"{where}: {REDIRECT_REFUSED.format(status=status)}")
    return SourceError(f"{where}: Vault answered {status}: {errors(response)}")


def _parse(response: requests.Response, *, kv_type: KVType, where: str) -> SourceData:
    body = response.json()
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


def _not_found(response: requests.Response, *, where: str, version: int) -> SourceError:
    try:
        body = response.json()
    except ValueError:
        body = {}
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


async def read(
    pool: VaultPool,
    client: hvac.Client,
    *,
    kv_type: KVType,
    mount: str,
    path: str,
    version: int = 0,
    namespace: str | None = None,
) -> SourceData:
    """Read the secret without blocking the event loop."""
    return await pool.run(
        read_blocking, client, kv_type=kv_type, mount=mount, path=path, version=version,
        namespace=namespace,
    )
