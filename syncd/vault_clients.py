"""Vault clients per (VaultAuth, VaultConnection), logged in once and reused.

ESO's users brought a Vault cluster down with a login per reconcile (ESO #376): every login
makes a token and a lease. Here a client is made once per authentication configuration and
kept until that configuration changes (a new generation of the VaultAuth or VaultConnection)
or Vault refuses its token (403), which is how a rotated token Secret is picked up.

Credentials are read from the Kubernetes API only when a client is made, never per reconcile.
A CA certificate from ``caCertSecretRef`` is written to a file under the temporary directory
(the only writable place in the container), because requests verifies against a file.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import hvac

from plumbing.kube import SECRETS, Kube, KubeError
from plumbing.vault import VaultPool, make_client
from syncd.specs import VaultAuth, VaultConnection


class AuthError(Exception):
    """A Vault client cannot be made from this configuration; the message says why."""

    reason = "VaultAuthFailed"


@dataclass(frozen=True)
class _Key:
    namespace: str  # the VaultStaticSecret's: credentials are read from its namespace
    auth: tuple[str, str, int]
    connection: tuple[str, str, int]


class VaultClients:
    """Make and cache logged-in hvac clients."""

    def __init__(self, *, kube: Kube, pool: VaultPool) -> None:
        self._kube = kube
        self._pool = pool
        self._clients: dict[_Key, hvac.Client] = {}
        self._ca_dir = Path(tempfile.gettempdir()) / "vault-syncd-ca"

    @staticmethod
    def _key(namespace: str, auth: VaultAuth, connection: VaultConnection) -> _Key:
        return _Key(
            namespace,
            (auth.namespace, auth.name, auth.generation),
            (connection.namespace, connection.name, connection.generation),
        )

    async def get(
        self, *, namespace: str, auth: VaultAuth, connection: VaultConnection
    ) -> hvac.Client:
        key = self._key(namespace, auth, connection)
        client = self._clients.get(key)
        if client is None:
            client = await self._make(namespace=namespace, auth=auth, connection=connection)
            # One configuration, one client: drop the clients of older generations.
            for old in [k for k in self._clients if k.auth[:2] == key.auth[:2] and
                        k.namespace == namespace]:
                del self._clients[old]
            self._clients[key] = client
        return client

    def forget(self, *, namespace: str, auth: VaultAuth, connection: VaultConnection) -> None:
        """Drop the client (Vault refused its token): the next call makes a new one."""
        self._clients.pop(self._key(namespace, auth, connection), None)

    async def _make(
        self, *, namespace: str, auth: VaultAuth, connection: VaultConnection
    ) -> hvac.Client:
        verify: bool | str = not connection.skip_tls_verify
        if connection.ca_cert_secret_ref and not connection.skip_tls_verify:
            verify = await self._ca_file(connection)
        headers = {**connection.headers, **auth.headers}
        client = make_client(
            address=connection.address,
            verify=verify,
            timeout=connection.timeout_seconds or 10.0,
            namespace=auth.vault_namespace,
            headers=headers,
        )
        if auth.method == "token" and auth.token is not None:
            reference = auth.token.secret_ref
            client.token = await self._secret_value(
                namespace, reference.name, reference.key, what="spec.token.secretRef"
            )
            return client
        raise AuthError(
            f"VaultAuth {auth.namespace}/{auth.name}: method {auth.method!r} is not supported"
            " yet; use method: token"
        )

    async def _secret_value(self, namespace: str, name: str, key: str, *, what: str) -> str:
        try:
            secret = await self._kube.request("GET", SECRETS.path(namespace=namespace, name=name))
        except KubeError as exc:
            raise AuthError(
                f"{what}: Secret {namespace}/{name} cannot be read: {exc.reason}"
            ) from None
        encoded = (secret.get("data") or {}).get(key)
        if not encoded:
            raise AuthError(f"{what}: Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(encoded).decode().strip()

    async def _ca_file(self, connection: VaultConnection) -> str:
        name = connection.ca_cert_secret_ref or ""
        pem = await self._secret_value(
            connection.namespace, name, "ca.crt", what="spec.caCertSecretRef"
        )
        digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
        path = self._ca_dir / f"{digest}.pem"

        def write() -> None:
            self._ca_dir.mkdir(mode=0o700, exist_ok=True)
            path.write_text(pem + "\n")

        await self._pool.run(write)
        return str(path)
