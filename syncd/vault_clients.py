"""Vault clients per (VaultAuth, VaultConnection), logged in once and reused.

ESO's users brought a Vault cluster down with a login per reconcile (ESO #376): every login
makes a token and a lease. Here a client is made once per authentication configuration and
kept until that configuration changes (a new generation of the VaultAuth or VaultConnection,
or a new object under the same name: the uid is part of the key, because a re-created object
starts at generation 1 again) or Vault refuses its token (403), which is how a rotated token
Secret is picked up.

Credentials go only where the operator allows (:mod:`syncd.vault_addresses`): the address is
checked before anything is read or sent, and every client's session sends only to that one
origin and follows no redirect (requests would re-send ``X-Vault-Token`` to wherever a
redirect points, and a 307 re-sends a login's JWT too). ``tlsServerName`` is the name for SNI
and for the certificate check when the address is an IP or another name.

KV reads, the request of every refresh, go over aiohttp on the event loop instead
(:class:`~plumbing.vault.VaultHTTP`, a third of the CPU of hvac on a thread): one session per
VaultConnection, shared by the VaultAuths that use it, made from the same address, CA,
``tlsServerName``, timeout and proxy as the hvac clients, pinned to the same origin and
following no redirect either; the token and headers of each client go with each request.

Credentials are read from the Kubernetes API only when a client is made, never per reconcile.

``method: token`` sends the value of a Secret as the Vault token, and only of a Secret of type
:data:`TOKEN_SECRET_TYPE`: otherwise any Secret of the namespace (a ServiceAccount token, an
application's password) could be sent to Vault by whoever may write a VaultAuth. The type is
set at creation and immutable, so no one turns an existing Secret into one by an edit.

``method: kubernetes`` (VSO's): a token of ``spec.kubernetes.serviceAccount`` in the
VaultStaticSecret's namespace is requested from the TokenRequest API, for the Vault audience
(``vault`` unless ``spec.kubernetes.audiences`` says otherwise, never the API server's own) and
for ten minutes at most, and traded for a Vault token at ``auth/<mount>/login``. Stolen from
Vault's side, such a token is worth nothing against the API server, and not for long.

``method: jwt`` trades a JWT at ``auth/<mount>/login``: the value of key ``jwt`` of the Secret
``spec.jwt.secretRef``, else a TokenRequest token of ``spec.jwt.serviceAccount`` under the same
rules as ``kubernetes`` (Vault audience only, ten minutes). ``method: appRole`` sends
``spec.appRole.roleId`` with the SecretID from key ``id`` of the Secret ``spec.appRole.secretRef``
or from the file ``spec.appRole.secretIDPath``. The Secrets must be of the method's own type
(:data:`CREDENTIAL_SECRET_TYPES`) for the reason ``token`` has one: a namespace user could
otherwise make syncd log in with another workload's credentials of the same namespace, which
syncd may read and that user may not. A ``secretIDPath`` must lie in
``<SECRET_ID_DIR>/<namespace of the VaultStaticSecret>/`` (the operator mounts the SecretIDs
there): otherwise any file syncd can read, its own ServiceAccount token first, could be sent.

Every method with a login goes through one mechanism: a small function per method makes the
login's body (:class:`_LoginRequest`), and :func:`_login_blocking` sends it, reads the token
and its lease, and turns Vault's refusals into messages naming the field to fix.

The Vault token of a login has a lease, so such a client is also made again when two thirds of
the lease have passed: the next use logs in anew (a new TokenRequest, a new login) while the
old token still works, rather than waiting for a 403 at expiry. The JWT and the Vault token
live only in the hvac client; no message, log line or span carries them.

A CA certificate from ``caCertSecretRef`` is written to a file under the temporary directory
(the only writable place in the container), because requests verifies against a file;
``caCertPath`` (VSO's: a file in syncd's container, e.g. a mounted ConfigMap) is used as it is,
once checked to be readable and to hold a certificate. It is only ever a trust anchor: its
content goes nowhere, and an error names the path, never the content.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import requests
import structlog
from requests.adapters import HTTPAdapter

from plumbing.kube import JSON, SECRETS, Kube, KubeError, Resource
from plumbing.tls import TLSMaterialError, ca_context
from plumbing.vault import VaultClient, VaultHTTP, VaultPool, make_client
from syncd.specs import AppRoleAuth, JWTAuth, VaultAuth, VaultConnection
from syncd.vault_addresses import AllowedAddresses, Origin, parse_address

SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", kind="ServiceAccount")
#: The only Secret type ``method: token`` sends to Vault.
TOKEN_SECRET_TYPE = "secrets.vault-syncd.dev/vault-token"
#: The Secret type each method's ``secretRef`` must have, and the key it reads.
CREDENTIAL_SECRET_TYPES = {
    "token": TOKEN_SECRET_TYPE,
    "jwt": "secrets.vault-syncd.dev/vault-jwt",
    "appRole": "secrets.vault-syncd.dev/vault-approle",
}
#: ``appRole.secretIDPath`` must be a file under ``SECRET_ID_DIR/<namespace>/``.
SECRET_ID_DIR = Path("/var/run/secrets/vault-syncd/approle")
#: A SecretID file larger than this is not one.
_SECRET_ID_MAX_BYTES = 4096
NAMESPACE_HEADER = "X-Vault-Namespace"
#: Audiences API servers commonly accept (their issuer): a token for one of them is refused.
#: The audiences of syncd's own in-cluster token are added at start-up
#: (:func:`api_server_audiences`), which covers an API server with other ``--api-audiences``.
KNOWN_API_AUDIENCES = frozenset({
    "https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local",
    "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
    "https://kubernetes.default", "kubernetes", "k3s", "rke2",
})
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
#: Log in again once this share of the Vault token's lease has passed (the rest is the margin
#: for a slow login and a refresh interval longer than the remainder).
RELOGIN_AT = 2 / 3


class AuthError(Exception):
    """A Vault client cannot be made from this configuration; the message says why.

    ``reason`` is the condition's reason; ``VaultAuthFailed`` unless Vault itself is the
    problem (sealed, unreachable), which the user fixes elsewhere.
    """

    reason = "VaultAuthFailed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


@dataclass(frozen=True)
class _Login:
    """What a login answered: the token (secret, never shown) and its lease in seconds."""

    token: str = field(repr=False)
    lease_seconds: int = 0


@dataclass(frozen=True)
class _LoginRequest:
    """What one method sends to ``auth/<mount>/login``, and how to speak of it in errors."""

    #: The login's body beyond ``spec.params`` (secret: never shown).
    body: Mapping[str, str] = field(repr=False)
    #: Values to cut out of Vault's error text, in case it ever echoes one.
    secrets: tuple[str, ...] = field(repr=False)
    #: The method's block, e.g. ``spec.jwt``; its ``role`` (or ``roleId``) for messages.
    block: str
    role: str
    #: Who logs in, for messages: ``ServiceAccount app/x``, ``Secret app/jwt``.
    identity: str


@dataclass(frozen=True)
class _Entry:
    client: VaultClient
    #: On the injected clock: when the next use makes a new client (None: never, a static
    #: token has no lease syncd could know).
    relogin_at: float | None = None
    #: When the token's lease ends: until then a failed re-login falls back on this client.
    expires_at: float | None = None


@dataclass(frozen=True)
class _Key:
    namespace: str  # the VaultStaticSecret's: credentials are read from its namespace
    auth: tuple[str, str, str, int]  # namespace, name, uid, generation
    connection: tuple[str, str, str, int]


class VaultClients:
    """Make and cache logged-in hvac clients.

    ``addresses`` is the operator's allow-list; ``api_audiences`` the audiences no requested
    ServiceAccount token may carry. ``clock`` (monotonic seconds) is injectable so the re-login
    before a lease ends can be tested without waiting for it.
    """

    def __init__(
        self, *, kube: Kube, pool: VaultPool, addresses: AllowedAddresses,
        api_audiences: frozenset[str] = KNOWN_API_AUDIENCES,
        clock: Callable[[], float] = time.monotonic, secret_id_dir: Path = SECRET_ID_DIR,
    ) -> None:
        self._kube = kube
        self._secret_id_dir = secret_id_dir
        self._pool = pool
        self._addresses = addresses
        self._api_audiences = api_audiences
        self._clock = clock
        self._clients: dict[_Key, _Entry] = {}
        #: One login at a time per configuration: VaultStaticSecrets reconciled together share
        #: the first one's client instead of each logging in (ESO #376).
        self._locks: dict[_Key, asyncio.Lock] = {}
        self._ca_dir = Path(tempfile.gettempdir()) / "vault-syncd-ca"
        #: VaultConnection (namespace, name) -> what its session was made from, and the
        #: session: one per connection, shared by every VaultAuth using it (its TCP and TLS
        #: connections reused), the token going with each request.
        self._sessions: dict[tuple[str, str], tuple[tuple[object, ...], VaultHTTP]] = {}
        #: Sessions of replaced connections, closed once no request of theirs is under way.
        self._retired: list[VaultHTTP] = []
        self._log = structlog.get_logger("syncd")

    @staticmethod
    def _key(namespace: str, auth: VaultAuth, connection: VaultConnection) -> _Key:
        return _Key(
            namespace,
            (auth.namespace, auth.name, auth.uid, auth.generation),
            (connection.namespace, connection.name, connection.uid, connection.generation),
        )

    async def get(
        self, *, namespace: str, auth: VaultAuth, connection: VaultConnection
    ) -> VaultClient:
        # Checked at every use, cached client or not: the operator may narrow the list.
        self.check_address(connection)
        key = self._key(namespace, auth, connection)
        entry = self._usable(key)
        if entry is not None:
            return entry.client
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._usable(key)  # made while this call waited for the lock
            if entry is None:
                try:
                    entry = await self._make(
                        namespace=namespace, auth=auth, connection=connection
                    )
                except AuthError as exc:
                    # A re-login that fails (Vault briefly away) does not end a token that
                    # still has a third of its lease: keep using it, try again next time.
                    current = self._clients.get(key)
                    if (current is None or current.expires_at is None
                            or self._clock() >= current.expires_at):
                        raise
                    self._log.warning("vault re-login failed; the current token is still"
                                      " valid", reason=exc.reason, error=str(exc))
                    return current.client
                # One configuration, one client: drop the clients of older generations.
                for old in [k for k in self._clients if k.auth[:2] == key.auth[:2] and
                            k.namespace == namespace]:
                    del self._clients[old]
                    if old != key:
                        self._locks.pop(old, None)
                self._clients[key] = entry
        return entry.client

    async def close(self) -> None:
        """Close every session (at shutdown: nothing reads any more)."""
        sessions = [*self._retired, *(http for _, http in self._sessions.values())]
        self._retired.clear()
        self._sessions.clear()
        await asyncio.gather(*(http.close() for http in sessions))

    async def _session(self, connection: VaultConnection, *, verify: bool | str) -> VaultHTTP:
        """The aiohttp session of ``connection`` as it is now, made on first use or after a
        change (a new generation or uid, a new CA); the one it replaces is retired."""
        await self._close_idle()
        made_from = (connection.uid, connection.generation, verify)
        name = (connection.namespace, connection.name)
        current = self._sessions.get(name)
        if current is not None and current[0] == made_from:
            return current[1]
        origin = parse_address(connection.address)
        try:  # in the pool: loading a CA bundle is file reading and parsing
            http = await self._pool.run(
                VaultHTTP, address=connection.address, verify=verify,
                server_name=connection.tls_server_name,
                timeout=connection.timeout_seconds or 10.0, allows=origin.serves)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise AuthError(
                f"VaultConnection {connection.namespace}/{connection.name}: its CA"
                f" certificates cannot be loaded ({type(exc).__name__}); check caCertSecretRef"
                " or caCertPath", reason="VaultAuthInvalid") from None
        current = self._sessions.get(name)  # another login may have made it meanwhile
        if current is not None and current[0] == made_from:
            return current[1]  # (``http`` has opened nothing yet: its session is lazy)
        if current is not None:
            self._retired.append(current[1])
        self._sessions[name] = (made_from, http)
        return http

    async def _close_idle(self) -> None:
        idle = [http for http in self._retired if not http.in_flight]
        self._retired = [http for http in self._retired if http.in_flight]
        for http in idle:
            await http.close()

    def _usable(self, key: _Key) -> _Entry | None:
        entry = self._clients.get(key)
        if entry is None or (entry.relogin_at is not None and self._clock() >= entry.relogin_at):
            return None
        return entry

    def forget(
        self, *, namespace: str, auth: VaultAuth, connection: VaultConnection,
        client: hvac.Client | None = None,
    ) -> None:
        """Drop the client (Vault refused its token): the next call makes a new one.

        With ``client``, only if that is still the cached one: a reconcile refused with an old
        token must not throw away the client another one has just logged in with.
        """
        key = self._key(namespace, auth, connection)
        entry = self._clients.get(key)
        if entry is not None and (client is None or entry.client is client):
            del self._clients[key]

    def check_address(self, connection: VaultConnection) -> None:
        """Raise :class:`AuthError` if the operator does not allow ``connection``'s address."""
        problem = self._addresses.problem(namespace=connection.namespace,
                                          name=connection.name, address=connection.address)
        if problem:
            raise AuthError(problem, reason="VaultAddressNotAllowed")

    async def connection_client(
        self, connection: VaultConnection, *, headers: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> VaultClient:
        """A client of ``connection`` without a token: its address (allowed, pinned), CA, TLS
        server name, headers (and ``headers``), and timeout (or ``request_timeout``). The
        outage probe uses it as it is (:mod:`syncd.outages`); a login adds a token."""
        self.check_address(connection)
        verify: bool | str = not connection.skip_tls_verify
        if connection.ca_cert_secret_ref and not connection.skip_tls_verify:
            verify = await self._ca_file(connection)
        elif connection.ca_cert_path and not connection.skip_tls_verify:
            verify = await self._ca_path(connection)
        # The Vault namespace goes with each request (the login: the VaultAuth's; a read: the
        # VaultStaticSecret's, else the VaultAuth's), not with the client.
        client = make_client(
            address=connection.address,
            verify=verify,
            timeout=request_timeout or connection.timeout_seconds or 10.0,
            headers={**connection.headers, **(headers or {})},
            # KV reads go through the connection's one aiohttp session (shared by its auths).
            http=await self._session(connection, verify=verify),
        )
        _pin(client, origin=parse_address(connection.address),
             server_name=connection.tls_server_name)
        return client

    async def _make(
        self, *, namespace: str, auth: VaultAuth, connection: VaultConnection
    ) -> _Entry:
        client = await self.connection_client(connection, headers=auth.headers)
        if auth.method == "token" and auth.token is not None:
            reference = auth.token.secret_ref
            client.token = await self._secret_value(
                namespace, reference.name, reference.key,
                what=f"VaultAuth {auth.namespace}/{auth.name}: spec.token.secretRef",
                secret_type=TOKEN_SECRET_TYPE,
            )
            return _Entry(client, relogin_at=None)
        started = self._clock()
        request = await self._login_request(namespace, auth)
        login = await self._pool.run(_login_blocking, client, auth=auth, request=request)
        client.token = login.token
        if login.lease_seconds <= 0:  # a token without a lease (root-like): keep it
            return _Entry(client)
        return _Entry(client, relogin_at=started + login.lease_seconds * RELOGIN_AT,
                      expires_at=started + login.lease_seconds)

    async def _login_request(self, namespace: str, auth: VaultAuth) -> _LoginRequest:
        """The login body of ``auth.method``, its credentials read from ``namespace``."""
        if auth.method == "kubernetes" and auth.kubernetes is not None:
            spec = auth.kubernetes
            jwt = await self._service_account_token(
                namespace, auth, block="spec.kubernetes", service_account=spec.service_account,
                audiences=spec.audiences, expiration=spec.token_expiration_seconds)
            return _LoginRequest(body={"role": spec.role, "jwt": jwt}, secrets=(jwt,),
                                 block="spec.kubernetes", role=spec.role,
                                 identity=f"ServiceAccount {namespace}/{spec.service_account}")
        if auth.method == "jwt" and auth.jwt is not None:
            return await self._jwt_request(namespace, auth, auth.jwt)
        if auth.method == "appRole" and auth.app_role is not None:
            return await self._app_role_request(namespace, auth, auth.app_role)
        raise AuthError(
            f"VaultAuth {auth.namespace}/{auth.name}: method {auth.method!r} is not supported;"
            " use method: token, kubernetes, jwt or appRole", reason="VaultAuthInvalid")

    async def _jwt_request(self, namespace: str, auth: VaultAuth,
                           spec: JWTAuth) -> _LoginRequest:
        block = "spec.jwt"
        if spec.secret_ref:
            jwt = await self._secret_value(
                namespace, spec.secret_ref, "jwt", what=self._where(auth, f"{block}.secretRef"),
                secret_type=CREDENTIAL_SECRET_TYPES["jwt"])
            identity = f"the JWT of Secret {namespace}/{spec.secret_ref}"
        else:
            account = spec.service_account or ""
            jwt = await self._service_account_token(
                namespace, auth, block=block, service_account=account,
                audiences=spec.audiences, expiration=spec.token_expiration_seconds)
            identity = f"ServiceAccount {namespace}/{account}"
        return _LoginRequest(body={"role": spec.role, "jwt": jwt}, secrets=(jwt,), block=block,
                             role=spec.role, identity=identity)

    async def _app_role_request(self, namespace: str, auth: VaultAuth,
                                spec: AppRoleAuth) -> _LoginRequest:
        block = "spec.appRole"
        if spec.secret_ref:
            secret_id = await self._secret_value(
                namespace, spec.secret_ref, "id", what=self._where(auth, f"{block}.secretRef"),
                secret_type=CREDENTIAL_SECRET_TYPES["appRole"])
            identity = f"the SecretID of Secret {namespace}/{spec.secret_ref}"
        else:
            path = spec.secret_id_path or ""
            secret_id = await self._secret_id_file(namespace, auth, path)
            identity = f"the SecretID of file {path}"
        return _LoginRequest(body={"role_id": spec.role_id, "secret_id": secret_id},
                             secrets=(secret_id,), block=block, role=spec.role_id,
                             identity=identity)

    async def _secret_id_file(self, namespace: str, auth: VaultAuth, path: str) -> str:
        """The SecretID in ``path``, which must be a small file of this namespace's folder."""
        what = self._where(auth, "spec.appRole.secretIDPath")
        folder = self._secret_id_dir / namespace

        def read() -> str:
            if not path.startswith("/") or ".." in path.split("/"):
                raise AuthError(f"{what}: {path!r} must be an absolute path without '..'",
                                reason="VaultAuthInvalid")
            resolved = Path(path).resolve()
            if not resolved.is_relative_to(folder.resolve()):
                raise AuthError(
                    f"{what}: {path!r} is not in {folder}/, where the operator mounts this"
                    " namespace's SecretIDs; no other file is sent to Vault",
                    reason="VaultAuthInvalid")
            try:
                with resolved.open("rb") as handle:
                    data = handle.read(_SECRET_ID_MAX_BYTES + 1)
            except OSError as exc:
                raise AuthError(f"{what}: {path!r} cannot be read: {exc.strerror}") from None
            text = data.decode(errors="replace").strip()
            if not text or len(data) > _SECRET_ID_MAX_BYTES:
                raise AuthError(f"{what}: {path!r} holds no SecretID (empty or over"
                                f" {_SECRET_ID_MAX_BYTES} bytes)")
            return text

        return await self._pool.run(read)

    @staticmethod
    def _where(auth: VaultAuth, field_path: str) -> str:
        return f"VaultAuth {auth.namespace}/{auth.name}: {field_path}"

    async def _service_account_token(
        self, namespace: str, auth: VaultAuth, *, block: str, service_account: str,
        audiences: tuple[str, ...], expiration: int,
    ) -> str:
        """A TokenRequest token of the ServiceAccount, in the VaultStaticSecret's namespace.

        Requested per login and never stored: it is only good for trading in at Vault, and a
        fresh one per login means a leaked Vault token is the only thing that outlives it.
        """
        account = f"{namespace}/{service_account}"
        where = f"VaultAuth {auth.namespace}/{auth.name}"
        api_audiences = {a.rstrip("/").lower() for a in self._api_audiences}
        for i, audience in enumerate(audiences):
            if audience.strip().rstrip("/").lower() in api_audiences:
                raise AuthError(
                    f"{where}: {block}.audiences[{i}]: {audience!r} is the Kubernetes"
                    " API server's own audience; a token for it would let whoever reads it at"
                    " Vault act as the ServiceAccount in the cluster. Use the audience of the"
                    " Vault role (its audience field), e.g. vault", reason="VaultAuthInvalid")
        what = f"{where}: {block}.serviceAccount"
        body: JSON = {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration, "audiences": list(audiences)},
        }
        path = SERVICE_ACCOUNTS.path(namespace=namespace, name=service_account,
                                     subresource="token")
        try:
            answer = await self._kube.request("POST", path, body=body)
        except KubeError as exc:
            if exc.status == 404:
                problem = (f"ServiceAccount {account} not found; create it in the"
                           " VaultStaticSecret's namespace")
            elif exc.status == 403:
                problem = (f"syncd may not request a token for ServiceAccount {account}"
                           " (RBAC: syncd's ClusterRole needs create on serviceaccounts/token)")
            else:
                problem = (f"TokenRequest for ServiceAccount {account} refused: {exc.status}"
                           f" {exc.reason}: {exc.message[:200]}")
            raise AuthError(f"{what}: {problem}") from None
        token = (answer.get("status") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"{what}: TokenRequest for ServiceAccount {account} returned no"
                            " token")
        return token

    async def _secret_value(
        self, namespace: str, name: str, key: str, *, what: str, secret_type: str | None = None
    ) -> str:
        try:
            secret = await self._kube.request("GET", SECRETS.path(namespace=namespace, name=name))
        except KubeError as exc:
            raise AuthError(
                f"{what}: Secret {namespace}/{name} cannot be read: {exc.reason}"
            ) from None
        found = secret.get("type") or "Opaque"
        if secret_type is not None and found != secret_type:
            raise AuthError(
                f"{what}: Secret {namespace}/{name} is of type {found!r}; only a Secret of type"
                f" {secret_type} is sent to Vault (kubectl create secret generic"
                f" NAME --type={secret_type} --from-literal={key}=...)",
                reason="VaultAuthInvalid")
        encoded = (secret.get("data") or {}).get(key)
        if not encoded:
            raise AuthError(f"{what}: Secret {namespace}/{name} has no key {key!r}",
                            reason="VaultAuthInvalid")
        try:
            return base64.b64decode(encoded).decode().strip()
        except UnicodeDecodeError:  # garbage (or DER) where text goes: never quoted
            raise AuthError(f"{what}: Secret {namespace}/{name} key {key!r} is not UTF-8 text",
                            reason="VaultAuthInvalid") from None

    async def _ca_path(self, connection: VaultConnection) -> str:
        """``caCertPath``, checked to be a readable PEM file (its text is never shown)."""
        path = connection.ca_cert_path or ""
        what = (f"VaultConnection {connection.namespace}/{connection.name}: spec.caCertPath:"
                f" {path!r}")

        def check() -> str:
            try:
                with open(path, "rb") as handle:
                    head = handle.read(64 * 1024)
            except OSError as exc:
                raise AuthError(f"{what} cannot be read: {exc.strerror}") from None
            if b"-----BEGIN CERTIFICATE-----" not in head:
                raise AuthError(f"{what} holds no PEM certificate", reason="VaultAuthInvalid")
            try:  # a truncated one would fail every request, in OpenSSL's words
                ca_context(what=what, cafile=path)
            except TLSMaterialError as exc:
                raise AuthError(str(exc), reason="VaultAuthInvalid") from None
            return path

        return await self._pool.run(check)

    async def _ca_file(self, connection: VaultConnection) -> str:
        name = connection.ca_cert_secret_ref or ""
        pem = await self._secret_value(
            connection.namespace, name, "ca.crt",
            what=f"VaultConnection {connection.namespace}/{connection.name}: spec.caCertSecretRef",
        )
        digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
        path = self._ca_dir / f"{digest}.pem"

        def write() -> None:
            try:  # else every request fails, in OpenSSL's words, naming nothing
                ca_context(what=f"VaultConnection {connection.namespace}/{connection.name}:"
                           f" spec.caCertSecretRef: Secret {connection.namespace}/{name} key"
                           " ca.crt", cadata=pem)
            except TLSMaterialError as exc:
                raise AuthError(str(exc), reason="VaultAuthInvalid") from None
            self._ca_dir.mkdir(mode=0o700, exist_ok=True)
            path.write_text(pem + "\n")

        await self._pool.run(write)
        return str(path)


def _login_blocking(client: hvac.Client, *, auth: VaultAuth, request: _LoginRequest) -> _Login:
    """Send ``request`` to ``auth/<mount>/login`` (blocking: run in the pool).

    Every refusal becomes an :class:`AuthError` saying what to fix. Vault's own error text is
    quoted only after the credentials are cut out of it, in case a message ever echoes them.
    """
    where = f"VaultAuth {auth.namespace}/{auth.name}"
    mount = f"auth/{auth.mount}"
    payload: dict[str, Any] = {**auth.params, **request.body}
    try:
        response: requests.Response = client.adapter.request(
            "POST", f"v1/{mount}/login", json=payload, raise_exception=False,
            headers=namespace_header(auth.vault_namespace),
        )
    except requests.RequestException as exc:
        raise AuthError(f"{where}: login at {mount}: Vault unreachable: {type(exc).__name__}",
                        reason="VaultUnavailable") from None
    status = response.status_code
    errors = _errors(response)
    for secret in request.secrets:
        errors = errors.replace(secret, "<credential>")
    if status == 200:
        try:
            block = response.json().get("auth") or {}
        except ValueError:
            block = {}
        token = block.get("client_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"{where}: login at {mount} returned no client token")
        return _Login(token=token, lease_seconds=int(block.get("lease_duration") or 0))
    if status == 503 and "sealed" in errors.lower():
        raise AuthError(f"{where}: login at {mount}: Vault is sealed", reason="VaultSealed")
    if 300 <= status < 400:
        raise AuthError(f"{where}: login at {mount}: {REDIRECT_REFUSED.format(status=status)}",
                        reason="VaultUnavailable")
    if status >= 500 or status == 429:
        raise AuthError(f"{where}: login at {mount}: Vault answered {status}: {errors}",
                        reason="VaultUnavailable")
    problem = _refusal(auth, request, status=status, errors=errors, mount=mount)
    raise AuthError(f"{where}: login at {mount} with role {request.role!r} failed: {problem}")


def _refusal(auth: VaultAuth, request: _LoginRequest, *, status: int, errors: str,
             mount: str) -> str:
    """What to fix after Vault refused a login, by method (Vault's messages per method)."""
    lowered, block, role = errors.lower(), request.block, request.role
    if "no handler for route" in lowered or "unsupported path" in lowered:
        return f"no {auth.method} auth method is mounted at {mount}; fix spec.mount"
    if auth.method == "kubernetes":
        if status == 400 and "invalid role name" in lowered:
            return f"Vault has no role {role!r} at {mount}; create it or fix {block}.role"
        if status == 403 and "not authorized" in lowered:
            return (f"Vault role {role!r} does not allow {request.identity} ({errors}); add it"
                    " to the role's bound_service_account_names and"
                    " bound_service_account_namespaces, or fix spec.kubernetes.serviceAccount")
        if status == 403:
            return (f"Vault refused the token of {request.identity} for role {role!r}"
                    f" ({errors or 'permission denied'}); check the role's audience against"
                    " spec.kubernetes.audiences and that Vault's token reviewer may create"
                    " TokenReviews (system:auth-delegator)")
    if auth.method == "jwt":
        if "could not be found" in lowered:
            return f"Vault has no role {role!r} at {mount}; create it or fix {block}.role"
        if status in (400, 403):
            return (f"Vault refused {request.identity} for role {role!r} ({errors}); check"
                    " the role's bound_audiences, bound_claims and bound_subject against"
                    f" {block}.audiences and the token's claims")
    if auth.method == "appRole" and status in (400, 403):
        return (f"Vault refused {request.identity} ({errors}); check {block}.roleId and that"
                " the SecretID is current (not expired nor used up)")
    return f"Vault answered {status}: {errors}"


def _errors(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    return "; ".join(str(e) for e in errors or [])[:300]


REDIRECT_REFUSED = ("Vault answered {status}, a redirect; syncd follows none (credentials go"
                    " only to the VaultConnection's address): use the address of the active"
                    " node or of a Service that forwards")


def namespace_header(vault_namespace: str | None) -> dict[str, str]:
    """The header that puts a request in a Vault (Enterprise) namespace; none for the root."""
    return {NAMESPACE_HEADER: vault_namespace} if vault_namespace else {}


class ForeignAddress(requests.RequestException):
    """A request to another origin than the client's VaultConnection (never sent)."""


class _PinnedAdapter(HTTPAdapter):
    """Send to one origin only; with ``server_name``, use it for SNI and the certificate check.

    urllib3 takes ``server_hostname`` for both the SNI and the hostname match, so a Vault
    reached by IP (or through a name its certificate lacks) is checked against the name given.
    """

    def __init__(self, *, origin: Origin, server_name: str | None) -> None:
        self._origin = origin
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        if self._server_name:
            pool_kwargs.update(server_hostname=self._server_name,
                               assert_hostname=self._server_name)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        if not self._origin.serves(request.url or ""):
            raise ForeignAddress("the request is not for the VaultConnection's address")
        return super().send(request, *args, **kwargs)


def _pin(client: hvac.Client, *, origin: Origin, server_name: str | None) -> None:
    """Make ``client`` send only to ``origin``, follow no redirect, and honour the TLS name."""
    adapter = _PinnedAdapter(origin=origin, server_name=server_name)
    session: requests.Session = client.session
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    client.allow_redirects = False


def api_server_audiences(token_file: Path = IN_CLUSTER_TOKEN) -> frozenset[str]:
    """:data:`KNOWN_API_AUDIENCES` and the audiences of syncd's own ServiceAccount token.

    The kubelet requests that token for the API server's audiences, so its ``aud`` claim is
    exactly what the API server accepts. Blocking (a file read): call it at start-up. Outside a
    cluster there is no such file, and the well-known audiences are all there is.
    """
    try:
        payload = token_file.read_text().strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError, binascii.Error):
        return KNOWN_API_AUDIENCES
    audiences = claims.get("aud") if isinstance(claims, Mapping) else None
    if isinstance(audiences, str):
        audiences = [audiences]
    if not isinstance(audiences, list):
        return KNOWN_API_AUDIENCES
    return KNOWN_API_AUDIENCES | {a for a in audiences if isinstance(a, str)}
