"""What a namespace user can make syncd send to Vault, tried as that user would.

The user holds ``edit`` in namespace ``app`` and nothing else: they write VaultConnections,
VaultAuths, VaultStaticSecrets and Secrets there, and they may run a server of their own (here a
capture server on loopback that records every request it gets). Through syncd they must get
nothing they could not get directly:

- a VaultConnection to an address the operator did not allow receives nothing, not a login,
  not a read, not a TokenRequest made for it; nor does an address an allowed Vault redirects to;
- a ServiceAccount token syncd mints for a login is for the Vault audience only (the API server
  refuses it) and expires within ten minutes, whatever the VaultAuth asks for;
- ``method: token`` sends only a Secret of the vault-token type, not any Secret of the namespace;
- a deleted and re-created VaultConnection takes effect at the next reconcile;
- ``spec.namespace`` reaches Vault as ``X-Vault-Namespace``; ``tlsServerName`` is the name the
  certificate is checked against when Vault is reached by IP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import hvac
import jwt
import pytest
from aiohttp import web

from testbed.kube.tokens import ISSUER
from testbed.pki import Authority
from testbed.vault import running_vault
from tests.syncd.e2e.world import APP_NS, OPERATOR_NS, World

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
TOKEN_SECRET_TYPE = "secrets.vault-syncd.dev/vault-token"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = Callable[[web.Request], web.StreamResponse]


@dataclass
class Capture:
    """A server of the namespace user's: records every request, answers with ``reply``."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    reply: Reply = field(default=lambda request: web.json_response(
        {"errors": ["permission denied"]}, status=403))

    def texts(self) -> list[str]:
        return [f"{r.method} {r.path} {json.dumps(r.headers)} {r.body.decode(errors='replace')}"
                for r in self.requests]


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    async with _serve() as server:
        yield server


@pytest.fixture
async def second_capture() -> AsyncIterator[Capture]:
    async with _serve() as server:
        yield server


@contextlib.asynccontextmanager
async def _serve() -> AsyncIterator[Capture]:
    found = Capture()

    async def handle(request: web.Request) -> web.StreamResponse:
        found.requests.append(Recorded(request.method, request.path, dict(request.headers),
                                       await request.read()))
        return found.reply(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


def _allow(world: World, *addresses: str) -> None:
    world.settings = dataclasses.replace(
        world.settings, allowed_vault_addresses=(world.vault.address, *addresses))


def _connection(name: str, address: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "VaultConnection", "metadata": {"name": name, "namespace": APP_NS},
            "spec": {"address": address, **spec}}


def _token_auth(name: str, *, secret: str, connection: str) -> dict[str, Any]:
    return {"kind": "VaultAuth", "metadata": {"name": name, "namespace": APP_NS},
            "spec": {"method": "token", "vaultConnectionRef": connection,
                     "token": {"secretRef": {"name": secret, "key": "token"}}}}


def _kubernetes_auth(name: str, *, connection: str, service_account: str,
                     **kubernetes: Any) -> dict[str, Any]:
    return {"kind": "VaultAuth", "metadata": {"name": name, "namespace": APP_NS},
            "spec": {"method": "kubernetes", "vaultConnectionRef": connection,
                     "kubernetes": {"role": "app-reader", "serviceAccount": service_account,
                                    **kubernetes}}}


def _token_secret(name: str, token: str, *, secret_type: str = TOKEN_SECRET_TYPE
                  ) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name, "namespace": APP_NS},
            "type": secret_type, "stringData": {"token": token}}


def _vss(name: str, *, auth: str, path: str = "kv-secret/info", **spec: Any) -> dict[str, Any]:
    return {"kind": "VaultStaticSecret", "metadata": {"name": name, "namespace": APP_NS},
            "spec": {"vaultAuthRef": auth, "mount": "secret", "path": path, "type": "kv-v2",
                     "refreshAfter": "1s", "destination": {"name": name, "create": True},
                     **spec}}


async def _refreshes(world: World, count: int = 3) -> None:
    """Wait for ``count`` more reads of the default VaultStaticSecret: syncd kept working."""
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + count, message="refreshes")


async def test_an_address_the_operator_did_not_allow_receives_nothing(
    world: World, capture: Capture
) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("allowed")})
    world.vss("honest")  # the operator's default VaultAuth and VaultConnection
    stolen = world.value("app-token")
    world.kube.admin.ensure_service_account(APP_NS, "deployer")
    async with world.tenant() as tenant:
        await tenant.create(_token_secret("my-token", stolen))
        await tenant.create(_connection("mine", capture.url))
        await tenant.create(_token_auth("via-token", secret="my-token", connection="mine"))
        await tenant.create(_kubernetes_auth("via-k8s", connection="mine",
                                             service_account="deployer"))
        await tenant.create(_vss("leak-token", auth="via-token"))
        await tenant.create(_vss("leak-k8s", auth="via-k8s"))
    world.start_syncd()

    await world.synced("honest")
    for name in ("leak-token", "leak-k8s"):
        condition = await world.wait_condition(name, "Synced", status="False",
                                               reason="VaultAddressNotAllowed")
        assert "VaultConnection app/mine: spec.address" in condition["message"]
        assert "--allowed-vault-addresses" in condition["message"]
        await world.eventually(lambda n=name: world.events("VaultAddressNotAllowed", about=n),
                               message=f"{name}: an Event")
    await _refreshes(world)
    assert capture.requests == []
    assert world.token_requests() == []  # not even a token was made for that address
    assert world.secret("leak-token") is None


async def test_a_redirect_from_an_allowed_address_is_not_followed(
    world: World, capture: Capture, second_capture: Capture
) -> None:
    # The operator allows the first server (a Vault, say, that turned hostile); it redirects
    # every request to the second, which the operator did not allow.
    redirector, elsewhere = capture, second_capture

    def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(elsewhere.url + request.path_qs)

    redirector.reply = redirect
    _allow(world, redirector.url)
    await world.kubernetes_auth()  # Vault's role app-reader, for the login attempt
    token = world.value("redirected-token")
    async with world.tenant() as tenant:
        await tenant.create(_token_secret("my-token", token))
        await tenant.create(_connection("redirecting", redirector.url))
        await tenant.create(_token_auth("via-token", secret="my-token",
                                        connection="redirecting"))
        await tenant.create(_kubernetes_auth("via-k8s", connection="redirecting",
                                             service_account="app-reader"))
        await tenant.create(_vss("read", auth="via-token"))
        await tenant.create(_vss("login", auth="via-k8s"))
    world.start_syncd()

    await world.eventually(
        lambda: {r.method for r in redirector.requests} >= {"GET", "POST"},
        message="both the read and the login reached the allowed address")
    assert any(r.headers.get("X-Vault-Token") == token for r in redirector.requests)
    for name in ("read", "login"):
        condition = await world.wait_condition(name, "Synced", status="False",
                                               reason="VaultUnavailable")
        assert "a redirect; syncd follows none" in condition["message"], condition
    assert elsewhere.requests == []


async def test_a_token_minted_for_a_login_is_no_key_to_the_api_server(
    world: World, capture: Capture
) -> None:
    # The namespace user runs the "Vault" (or reads its logs): whatever login arrives there is
    # theirs. The operator allowed the address; the tokens must still be worth nothing else.
    _allow(world, capture.url)
    world.kube.admin.ensure_service_account(APP_NS, "deployer")
    world.kube.admin.grant(APP_NS, "deployer", "edit", in_namespace=APP_NS)
    world.kube.admin.ensure_service_account(APP_NS, "builder")
    async with world.tenant() as tenant:
        await tenant.create(_connection("mine", capture.url))
        # A day-long token, and no audience: what the user would like to have.
        await tenant.create(_kubernetes_auth("deployer", connection="mine",
                                             service_account="deployer",
                                             tokenExpirationSeconds=86400))
        # The API server's own audience, asked for outright.
        await tenant.create(_kubernetes_auth("api-audience", connection="mine",
                                             service_account="builder", audiences=[ISSUER]))
        await tenant.create(_vss("as-deployer", auth="deployer"))
        await tenant.create(_vss("as-builder", auth="api-audience"))
    world.start_syncd()

    logins = await world.eventually(
        lambda: [r for r in capture.requests if r.path == "/v1/auth/kubernetes/login"],
        message="a login at the user's server")
    stolen = json.loads(logins[0].body)["jwt"]
    world.secret_values.add(stolen.rsplit(".", 1)[-1])
    claims = jwt.decode(stolen, options={"verify_signature": False})
    assert claims["aud"] == ["vault"]
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["sub"] == "system:serviceaccount:app:deployer"

    async with aiohttp.ClientSession(base_url=world.kube.url) as http:
        # As the thief: the token opens nothing at the API server ...
        async with http.get(f"/api/v1/namespaces/{APP_NS}/secrets",
                            headers={"Authorization": f"Bearer {stolen}"}) as refused:
            assert refused.status == 401
        # ... and a Vault reviewing it sees it valid for the vault audience, for ten minutes.
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": stolen, "audiences": ["vault"]}}
        async with http.post(TOKEN_REVIEWS, json=review) as answer:
            assert (await answer.json())["status"]["authenticated"] is True
        world.kube.cluster.authn.signer.advance(600 + 61)  # ten minutes and the leeway
        async with http.post(TOKEN_REVIEWS, json=review) as answer:
            status = (await answer.json())["status"]
        assert "authenticated" not in status and "expired" in status["error"]

    condition = await world.wait_condition("as-builder", "Synced", status="False",
                                           reason="VaultAuthInvalid")
    assert "VaultAuth app/api-audience: spec.kubernetes.audiences[0]" in condition["message"]
    assert "API server's own audience" in condition["message"]
    assert [r for r in world.token_requests() if r.name == "builder"] == []


async def test_method_token_sends_only_a_vault_token_secret(
    world: World, capture: Capture
) -> None:
    _allow(world, capture.url)
    password = world.value("app-password")
    async with world.tenant() as tenant:
        # An application's Secret, with a key named token: not a Vault token to send anywhere.
        await tenant.create(_token_secret("app-config", password, secret_type="Opaque"))
        await tenant.create(_connection("mine", capture.url))
        await tenant.create(_token_auth("app-config", secret="app-config", connection="mine"))
        await tenant.create(_vss("exfiltrate", auth="app-config"))
    world.start_syncd()

    condition = await world.wait_condition("exfiltrate", "Synced", status="False",
                                           reason="VaultAuthInvalid")
    for part in ("VaultAuth app/app-config: spec.token.secretRef",
                 "Secret app/app-config is of type 'Opaque'", TOKEN_SECRET_TYPE):
        assert part in condition["message"], (part, condition["message"])
    await world.eventually(lambda: world.events("VaultAuthInvalid", about="exfiltrate"),
                           message="an Event")
    await world.wait_condition("exfiltrate", "Synced", status="False", reason="VaultAuthInvalid")
    assert capture.requests == []


async def test_a_recreated_vault_connection_takes_effect_at_the_next_reconcile(
    world: World, capture: Capture
) -> None:
    _allow(world, capture.url)
    first = world.value("first-vault")
    await world.write_kv("kv-secret/info", {"password": first})
    moved = world.value("second-vault")
    capture.reply = lambda request: web.json_response({"data": {
        "data": {"password": moved},
        "metadata": {"version": 7, "created_time": "2026-01-01T00:00:00Z", "deletion_time": "",
                     "destroyed": False, "custom_metadata": None}}})
    async with world.tenant() as tenant:
        await tenant.create(_token_secret("my-token", world.vault_token()))
        await tenant.create(_connection("vault", world.vault.address))
        await tenant.create(_token_auth("mine", secret="my-token", connection="vault"))
        await tenant.create(_vss("moving", auth="mine"))
        world.start_syncd()
        assert (await world.synced("moving"))["password"] == first

        await tenant.delete("VaultConnection", "vault")
        await world.eventually(lambda: world.kube.admin.get(
            "secrets.vault-syncd.dev/v1beta1", "VaultConnection", "vault", APP_NS) is None,
            message="the VaultConnection gone")
        await tenant.create(_connection("vault", capture.url))  # generation 1 again
    # refreshAfter is 1 s: the next reconcile reads from the new address.
    await world.eventually(lambda: (world.secret_data("moving") or {}).get("password") == moved,
                           deadline=5, message="the Secret from the new address")
    assert capture.requests and capture.requests[0].path == "/v1/secret/data/kv-secret/info"
    reads = world.vault.admin.request_count(method="GET", path="/v1/secret/data/kv-secret/info")
    await world.eventually(lambda: len(capture.requests) >= 3, message="refreshes")
    assert world.vault.admin.request_count(
        method="GET", path="/v1/secret/data/kv-secret/info") == reads


async def test_spec_namespace_is_sent_as_the_vault_namespace_header(world: World) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("namespaced")})
    async with world.tenant() as tenant:
        await tenant.create(_vss("in-team-a", auth=f"{OPERATOR_NS}/default",
                                 namespace="team-a"))
        await world.kubernetes_auth()  # the Vault side, and VaultAuth k8s
        auth = _kubernetes_auth("team-b", connection=f"{OPERATOR_NS}/default",
                                service_account="app-reader", audiences=["vault"])
        auth["spec"]["namespace"] = "team-b"
        await tenant.create(auth)
        # No spec.namespace: the VaultAuth's.
        await tenant.create(_vss("in-team-b", auth="team-b"))
        # A pinned version (a query string) passes the client's pin to its own address.
        await tenant.create(_vss("pinned", auth="team-b", version=1))
    world.start_syncd()
    await world.synced("in-team-a")
    await world.synced("in-team-b")
    await world.synced("pinned")
    assert world.status("pinned")["sourceVersion"] == 1

    path = "/v1/secret/data/kv-secret/info"
    count = world.vault.admin.request_count
    assert count(method="GET", path=path, namespace="team-a") >= 1
    assert count(method="GET", path=path, namespace="team-b") >= 1
    assert count(method="POST", path="/v1/auth/kubernetes/login", namespace="team-b") == 1
    assert count(method="POST", path="/v1/auth/kubernetes/login", namespace="") == 0


async def test_tls_server_name_is_the_name_checked(world: World, tmp_path: Path) -> None:
    authority = Authority.create("tenant", tmp_path)
    cert, key = authority.issue("vault.tenant.test", server=True)  # that name, no IP
    async with running_vault(tls=True, tls_dir=tmp_path / "tls") as tls_vault:
        root = tls_vault.admin.bootstrap(shares=1, threshold=1, kv_v2_path="secret").root_token
        world.secret_values.add(root)
        value = world.value("over-tls")
        client = hvac.Client(url=tls_vault.address, token=root, verify=tls_vault.verify)
        await world.vault_call(client.secrets.kv.v2.create_or_update_secret,
                               path="kv-secret/info", secret={"password": value})
        context = tls_vault.core.nodes[0].ssl_context
        assert context is not None
        context.load_cert_chain(cert, key)  # the listener now presents the tenant certificate
        names: list[str | None] = []
        context.sni_callback = lambda _socket, name, _context: names.append(name)
        _allow(world, tls_vault.address)
        ca = authority.ca_file.read_text()
        async with world.tenant() as tenant:
            await tenant.create({"kind": "Secret", "metadata": {"name": "tenant-ca"},
                                 "stringData": {"ca.crt": ca}})
            await tenant.create(_token_secret("tls-token", root))
            for name, server_name in [("named", "vault.tenant.test"), ("by-ip", None),
                                      ("misnamed", "other.tenant.test")]:
                extra = {"tlsServerName": server_name} if server_name else {}
                await tenant.create(_connection(name, tls_vault.address,
                                                caCertSecretRef="tenant-ca", **extra))
                await tenant.create(_token_auth(name, secret="tls-token", connection=name))
                await tenant.create(_vss(name, auth=name))
        world.start_syncd()

        assert (await world.synced("named"))["password"] == value
        assert "vault.tenant.test" in names
        for name in ("by-ip", "misnamed"):
            condition = await world.wait_condition(name, "Synced", status="False",
                                                   reason="VaultUnavailable")
            assert "SSLError" in condition["message"], condition
            assert world.secret(name) is None
        await world.stop_syncd()
