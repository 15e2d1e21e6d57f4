"""VaultDynamicSecret and VaultPKISecret under the tenant rules of VaultStaticSecrets: a
namespace user (the shipped ``edit`` role, their own token) pointing them at their own server
gets nothing sent there — not a login, not a credentials request, not a revocation."""

from __future__ import annotations

from typing import Any

from tests.syncd.e2e.test_vault_access_boundaries import (  # noqa: F401 (the fixture)
    Capture,
    _allow,
    _connection,
    _token_auth,
    _token_secret,
    capture,
)
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World


def _status(world: World, kind: str, name: str) -> dict[str, Any]:
    obj = world.kube.admin.get(GROUP_VERSION, kind, name, APP_NS) or {}
    return dict(obj.get("status") or {})


def _ready_false(world: World, kind: str, name: str) -> dict[str, Any] | None:
    return next((c for c in _status(world, kind, name).get("conditions") or []
                 if c["type"] == "Ready" and c["status"] == "False"), None)


async def test_their_server_receives_nothing(
    world: World, capture: Capture,  # noqa: F811 (the fixture imported above)
) -> None:
    _allow(world)
    async with world.tenant() as tenant:
        await tenant.create(_token_secret("my-token", world.value("app-token")))
        await tenant.create(_connection("mine", capture.url))
        await tenant.create(_token_auth("via-token", secret="my-token", connection="mine"))
        await tenant.create({
            "kind": "VaultDynamicSecret", "metadata": {"name": "db"},
            "spec": {"vaultAuthRef": "via-token", "mount": "database", "path": "creds/app",
                     "revoke": True, "destination": {"name": "db", "create": True}}})
        await tenant.create({
            "kind": "VaultPKISecret", "metadata": {"name": "tls"},
            "spec": {"vaultAuthRef": "via-token", "mount": "pki", "role": "web",
                     "commonName": "app.example.com", "revoke": True,
                     "destination": {"name": "tls", "create": True}}})
    world.start_syncd()

    for kind, name in (("VaultDynamicSecret", "db"), ("VaultPKISecret", "tls")):
        condition = await world.eventually(
            lambda k=kind, n=name: _ready_false(world, k, n), message=f"{name}: refused")
        assert condition["reason"] == "VaultAddressNotAllowed"
        assert "VaultConnection app/mine: spec.address" in condition["message"]
        assert world.secret(name) is None
    # Deleting them (their finalizers: revoke) sends nothing there either.
    for kind, name in (("VaultDynamicSecret", "db"), ("VaultPKISecret", "tls")):
        world.kube.admin.delete(GROUP_VERSION, kind, name, APP_NS)
        await world.eventually(
            lambda k=kind, n=name: world.kube.admin.get(GROUP_VERSION, k, n, APP_NS) is None,
            message=f"{name} deleted")
    assert capture.requests == []
    assert world.token_requests() == []
