"""The JWT auth method through hvac: PEM keys, bound claims and audiences, Vault's refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import hvac
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hvac import exceptions

from .conftest import ReadyVault, in_thread

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PEM = _KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
ISSUER = "https://issuer.example"


def _jwt(key: rsa.RSAPrivateKey = _KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "ci-runner", "aud": "vault", "iat": now, "exp": now + 300,
            "project": "blue", **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256")


async def _configured(root: hvac.Client) -> None:
    await in_thread(root.sys.enable_auth_method, "jwt")
    await in_thread(root.sys.create_or_update_policy, "app",
                    'path "secret/data/app/*" { capabilities = ["read"] }')
    await in_thread(root.auth.jwt.configure, jwt_validation_pubkeys=[_PEM],
                    bound_issuer=ISSUER)
    await in_thread(root.auth.jwt.create_role, "ci", role_type="jwt", user_claim="sub",
                    bound_audiences=["vault"], bound_claims={"project": ["blue", "green"]},
                    token_policies=["app"], token_ttl="15m", allowed_redirect_uris=[])


async def test_jwt_login_with_pem_keys(vault_ready: ReadyVault, root: hvac.Client) -> None:
    await _configured(root)
    anonymous = hvac.Client(url=vault_ready.address)
    login = await in_thread(anonymous.auth.jwt.jwt_login, "ci", _jwt(), use_token=False)
    auth = login["auth"]
    assert auth["policies"] == ["app", "default"]
    assert auth["lease_duration"] == 900
    assert auth["metadata"] == {"role": "ci"}
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "app/x", secret={"v": "1"})
    reader = vault_ready.client(auth["client_token"])
    assert await in_thread(reader.secrets.kv.v2.read_secret_version, "app/x",
                           raise_on_deleted_version=True)
    role = (await in_thread(root.auth.jwt.read_role, "ci"))["data"]
    assert (role["role_type"], role["bound_audiences"]) == ("jwt", ["vault"])


@pytest.mark.parametrize(("token", "message"), [
    (lambda: _jwt(aud="other"), "aud claim does not match any bound audience"),
    (lambda: _jwt(project="red"), 'claim "project" does not match any associated bound'),
    (lambda: _jwt(project=None), 'claim "project" is missing'),
    (lambda: _jwt(iss="https://elsewhere"), "invalid issuer claim (iss)"),
    (lambda: _jwt(exp=int(time.time()) - 600), "token is expired (exp)"),
    (lambda: _jwt(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
     "no known key successfully validated the token signature"),
    (lambda: "not-a-jwt", "error parsing token"),
    (lambda: _jwt(sub=None), 'claim "sub" not found in token'),
])
async def test_jwt_login_refusals(vault_ready: ReadyVault, root: hvac.Client,
                                  token: Any, message: str) -> None:
    await _configured(root)
    anonymous = hvac.Client(url=vault_ready.address)
    with pytest.raises(exceptions.InvalidRequest) as caught:
        await in_thread(anonymous.auth.jwt.jwt_login, "ci", token(), use_token=False)
    assert message in str(caught.value)


async def test_jwt_role_and_config_checks(vault_ready: ReadyVault, root: hvac.Client) -> None:
    await _configured(root)
    anonymous = hvac.Client(url=vault_ready.address)
    with pytest.raises(exceptions.InvalidRequest, match='role "nope" could not be found'):
        await in_thread(anonymous.auth.jwt.jwt_login, "nope", _jwt(), use_token=False)
    await in_thread(root.auth.jwt.create_role, "web", role_type="oidc", user_claim="sub",
                    allowed_redirect_uris=["https://x/cb"], bound_audiences=["vault"])
    with pytest.raises(exceptions.InvalidRequest, match="oidc role_type is not allowed"):
        await in_thread(anonymous.auth.jwt.jwt_login, "web", _jwt(), use_token=False)
    with pytest.raises(exceptions.InvalidRequest, match="at least one bound constraint"):
        await in_thread(root.auth.jwt.create_role, "loose", role_type="jwt",
                        user_claim="sub", allowed_redirect_uris=[])
    with pytest.raises(exceptions.InvalidRequest, match="exactly one of"):
        await in_thread(root.auth.jwt.configure)


async def test_jwt_login_with_a_jwks_url(vault_ready: ReadyVault, root: hvac.Client) -> None:
    """Keys fetched from ``jwks_url`` (a key set served here), matched by ``kid``."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})

    async def keys(_: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/jwks", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await in_thread(root.sys.enable_auth_method, "jwt")
        await in_thread(root.auth.jwt.configure, jwks_url=f"http://127.0.0.1:{port}/jwks")
        await in_thread(root.auth.jwt.create_role, "ci", role_type="jwt", user_claim="sub",
                        bound_audiences=["vault"], token_policies=["default"],
                        allowed_redirect_uris=[])
        anonymous = hvac.Client(url=vault_ready.address)
        signed = jwt.encode({"iss": ISSUER, "sub": "ci", "aud": "vault",
                             "exp": int(time.time()) + 60}, _KEY, algorithm="RS256",
                            headers={"kid": "k1"})
        login = await in_thread(anonymous.auth.jwt.jwt_login, "ci", signed, use_token=False)
        assert login["auth"]["metadata"] == {"role": "ci"}
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode({"sub": "ci", "aud": "vault", "exp": int(time.time()) + 60},
                            other, algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(exceptions.InvalidRequest, match="error verifying token"):
            await in_thread(anonymous.auth.jwt.jwt_login, "ci", forged, use_token=False)
    finally:
        await runner.cleanup()
