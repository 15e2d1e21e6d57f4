"""Vault requests of a VaultDynamicSecret: issue credentials, renew and revoke their lease.

The answers of ``sys/leases/renew`` decide whether a lease lives on: Vault caps a renewal at
the role's max TTL (a shorter ``lease_duration`` than the increment asked for, with a warning)
and refuses one for a lease it no longer knows or will not renew (400), or that the engine
would not extend (500, "failed to renew entry"). Both are
:class:`LeaseEnding`: the caller fetches new credentials while the old ones still work.

Messages carry the mount, path and HTTP status. Never the credentials; the lease id neither: it
is not a secret in Vault (``sys/leases/lookup`` needs a token and a policy to use it, and Vault
logs it), but it names one credential and nobody needs it in an Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hvac
import requests

from plumbing.vault import VaultPool
from syncd.sources import SourceError, VaultUnavailable, errors, failure
from syncd.vault_clients import namespace_header


class LeaseEnding(SourceError):
    """The lease cannot be renewed (any more): new credentials are due."""

    reason = "LeaseNotRenewable"
    retry = False


#: Renewal answers that end the lease's life (see :func:`renew_blocking`).
_REFUSALS = frozenset({400, 403, 404, 500})


class Refused(SourceError):
    """Vault refused the request itself (400): what to fix is in its message."""

    reason = "VaultRequestRefused"


@dataclass(frozen=True)
class Issued:
    """Credentials from Vault; ``data`` is secret and never shown in a repr."""

    data: Mapping[str, Any] = field(repr=False)
    lease_id: str = field(repr=False)
    lease_duration: int = 0
    renewable: bool = False
    request_id: str = ""


def send(
    client: hvac.Client, method: str, url: str, *, where: str, namespace: str | None,
    json: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
) -> requests.Response:
    """One request to Vault; no answer at all is :class:`VaultUnavailable`."""
    try:
        response: requests.Response = client.adapter.request(
            method, url, json=json, params=params, raise_exception=False,
            headers=namespace_header(namespace),
        )
    except requests.RequestException as exc:
        raise VaultUnavailable(f"{where}: Vault unreachable: {type(exc).__name__}") from None
    return response


def issue_blocking(
    client: hvac.Client, *, method: str, mount: str, path: str, params: Mapping[str, Any],
    namespace: str | None,
) -> Issued:
    where = f"{mount}/{path}"
    url = f"v1/{mount}/{path}"
    response = send(client, method, url, where=where, namespace=namespace,
                     json=dict(params) if method != "GET" and params else None,
                     params=dict(params) if method == "GET" and params else None)
    if response.status_code != 200:
        if response.status_code == 404:
            raise SourceError(f"{where}: not found in Vault (is the role there?)")
        if response.status_code == 400:
            # Vault's own sentence names what it refused ("common name x not allowed by
            # this role", "unknown role: x"). Retried with backoff: the role may be fixed.
            raise Refused(f"{where}: Vault refused the request: {errors(response)}")
        raise failure(response, where=where)
    body = response.json()
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise SourceError(f"{where}: Vault's response has no data")
    return Issued(
        data=data, lease_id=str(body.get("lease_id") or ""),
        lease_duration=int(body.get("lease_duration") or 0),
        renewable=bool(body.get("renewable")), request_id=str(body.get("request_id") or ""),
    )


def renew_blocking(
    client: hvac.Client, *, lease_id: str, increment: int, namespace: str | None, where: str
) -> int:
    """Renew; the new duration. :class:`LeaseEnding` when Vault refuses or caps it."""
    response = send(client, "PUT", "v1/sys/leases/renew", where=where, namespace=namespace,
                     json={"lease_id": lease_id, "increment": increment})
    if response.status_code in _REFUSALS:
        # "lease not found", "lease is not renewable" (400), a policy without sys/leases/renew
        # (403), the engine's own refusal ("failed to renew entry": 500, as Vault wraps it).
        # New credentials may well work where the renewal did not; a Vault that is down,
        # sealed or overloaded (503, 502, 504, 429, no answer) is retried instead.
        raise LeaseEnding(f"{where}: Vault refused to renew the lease: {errors(response)}")
    if response.status_code != 200:
        raise failure(response, where=where)
    duration = int(response.json().get("lease_duration") or 0)
    if duration < increment:
        raise LeaseEnding(f"{where}: the lease reached its max TTL ({duration}s left)")
    return duration


def revoke_blocking(
    client: hvac.Client, *, lease_id: str, namespace: str | None, where: str
) -> None:
    response = send(client, "PUT", "v1/sys/leases/revoke", where=where, namespace=namespace,
                     json={"lease_id": lease_id})
    if response.status_code not in (200, 204):
        raise failure(response, where=where)


async def issue(pool: VaultPool, client: hvac.Client, **kwargs: Any) -> Issued:
    return await pool.run(issue_blocking, client, **kwargs)


async def renew(pool: VaultPool, client: hvac.Client, **kwargs: Any) -> int:
    return await pool.run(renew_blocking, client, **kwargs)


async def revoke(pool: VaultPool, client: hvac.Client, **kwargs: Any) -> None:
    await pool.run(revoke_blocking, client, **kwargs)
