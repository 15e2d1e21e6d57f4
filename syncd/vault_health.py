"""``GET sys/health`` of a VaultConnection: the one request that tells an outage from a
request's own failure (see :mod:`syncd.outages`, which sends it through :class:`HealthProbe`).

The probe is built from the VaultConnection alone (its address, CA, TLS server name and
timeout; no token, no VaultAuth headers, no Vault namespace): sys/health needs none, and a
probe that carried a tenant's credentials could not be shared by that tenant's VaultAuths.
"""

from __future__ import annotations

import hvac
import requests
import structlog

from plumbing.vault import VaultPool
from syncd.outages import Identity, Verdict, identity
from syncd.specs import VaultConnection
from syncd.vault_clients import AuthError, VaultClients

#: A probe waits at most this long (or the VaultConnection's timeout, if shorter): Vault
#: answers sys/health from memory in milliseconds, and a probe sent into a network that
#: drops packets must not keep the next one (the one Vault answers) waiting.
PROBE_TIMEOUT = 2.0
#: Standbys and performance standbys forward requests: they count as up.
HEALTH_QUERY = {"standbyok": "true", "perfstandbyok": "true"}


class HealthProbe:
    """``GET sys/health`` through a client made from the VaultConnection alone."""

    def __init__(self, *, clients: VaultClients, pool: VaultPool) -> None:
        self._clients = clients
        self._pool = pool
        self._cache: dict[Identity, hvac.Client] = {}

    async def __call__(self, connection: VaultConnection) -> Verdict:
        try:
            client = await self._client(connection)
        except AuthError as exc:
            # Not allowed any more, or its CA cannot be read: the objects' own reconciles say
            # so; no outage this probe could see the end of.
            structlog.get_logger("syncd.outages").warning(
                "vault probe not sent", reason=exc.reason, error=str(exc))
            return None
        return await self._pool.run(health_blocking, client)

    async def _client(self, connection: VaultConnection) -> hvac.Client:
        where = identity(connection)
        client = self._cache.get(where)
        if client is None:
            timeout = min(connection.timeout_seconds or PROBE_TIMEOUT, PROBE_TIMEOUT)
            client = await self._clients.connection_client(connection,
                                                          request_timeout=timeout)
            for older in [w for w in self._cache if w[:2] == where[:2]]:
                del self._cache[older]  # an earlier generation of the same VaultConnection
            self._cache[where] = client
        else:
            self._clients.check_address(connection)  # the operator may narrow the list
        return client


def health_blocking(client: hvac.Client) -> Verdict:
    """Whether Vault answers (blocking: run it in the pool); see the module docstring."""
    try:
        response: requests.Response = client.adapter.request(
            "GET", "v1/sys/health", params=HEALTH_QUERY, raise_exception=False)
    except requests.RequestException as exc:
        return "VaultUnavailable", f"Vault unreachable: {type(exc).__name__}"
    status = response.status_code
    if status == 200:
        return None
    if status == 503 and _sealed(response):
        return "VaultSealed", "Vault is sealed"
    if status == 501:
        return "VaultUnavailable", "Vault is not initialized"
    if status >= 500 or status in (472, 474):  # 472: a DR secondary; 474: cut off the active
        return "VaultUnavailable", f"Vault answered sys/health with {status}"
    return None  # 4xx: something in front hides sys/health; it cannot tell


def _sealed(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("sealed") is True
