"""ACL policies: allow, deny, globs, specificity, and the check happening before routing."""

from __future__ import annotations

import hvac
import pytest
from hvac import exceptions

from testbed.vault.policies import Acl, parse_policy

from .conftest import ReadyVault, in_thread

POLICY = """
# services read their own secrets
path "secret/data/apps/+/config" {
  capabilities = ["read"]
}
path "secret/data/apps/*" {
  capabilities = ["read", "create", "update"]
}
path "secret/data/apps/locked/*" {
  capabilities = ["deny"]
}
path "secret/metadata/apps/*" { capabilities = ["list"] }
"""


async def _token(ready: ReadyVault, root: hvac.Client, policy: str) -> hvac.Client:
    await in_thread(root.sys.create_or_update_policy, "p", policy)
    created = await in_thread(root.auth.token.create, policies=["p"])
    return ready.client(created["auth"]["client_token"])


async def test_allow_and_deny(vault_ready: ReadyVault, root: hvac.Client) -> None:
    user = await _token(vault_ready, root, POLICY)
    kv = user.secrets.kv.v2
    await in_thread(kv.create_or_update_secret, "apps/web", secret={"v": "1"})
    assert (await in_thread(kv.read_secret_version, "apps/web", raise_on_deleted_version=True))[
        "data"
    ]["data"] == {"v": "1"}
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "apps/locked/x", secret={"v": "1"})
    with pytest.raises(exceptions.Forbidden) as caught:
        await in_thread(kv.read_secret_version, "apps/locked/x", raise_on_deleted_version=True)
    assert caught.value.errors == ["permission denied"]
    with pytest.raises(exceptions.Forbidden):
        await in_thread(kv.create_or_update_secret, "elsewhere", secret={"v": "1"})
    assert (await in_thread(kv.list_secrets, "apps"))["data"]["keys"] == ["locked/", "web"]
    with pytest.raises(exceptions.Forbidden):
        await in_thread(kv.delete_metadata_and_all_versions, "apps/web")


async def test_most_specific_rule_wins(vault_ready: ReadyVault, root: hvac.Client) -> None:
    user = await _token(vault_ready, root, POLICY)
    kv = user.secrets.kv.v2
    # apps/web/config matches the "+" rule (read only), which beats "apps/*".
    await in_thread(
        root.secrets.kv.v2.create_or_update_secret, "apps/web/config", secret={"v": "1"}
    )
    assert await in_thread(kv.read_secret_version, "apps/web/config", raise_on_deleted_version=True)
    with pytest.raises(exceptions.Forbidden):
        await in_thread(kv.create_or_update_secret, "apps/web/config", secret={"v": "2"})


async def test_create_versus_update(vault_ready: ReadyVault, root: hvac.Client) -> None:
    user = await _token(
        vault_ready, root, 'path "secret/data/*" { capabilities = ["create", "read"] }'
    )
    kv = user.secrets.kv.v2
    await in_thread(kv.create_or_update_secret, "new", secret={"v": "1"})  # create: allowed
    with pytest.raises(exceptions.Forbidden):
        await in_thread(kv.create_or_update_secret, "new", secret={"v": "2"})  # update: not


async def test_acl_is_checked_before_routing(vault_ready: ReadyVault, root: hvac.Client) -> None:
    user = await _token(vault_ready, root, POLICY)
    with pytest.raises(exceptions.Forbidden):
        await in_thread(user.read, "no/such/mount")
    with pytest.raises(exceptions.InvalidPath) as caught:
        await in_thread(root.adapter.get, "/v1/no/such/mount")
    assert caught.value.errors == ['no handler for route "no/such/mount". route entry not found.']


async def test_missing_and_unknown_tokens(vault_ready: ReadyVault) -> None:
    anonymous = hvac.Client(url=vault_ready.address)
    with pytest.raises(exceptions.Forbidden) as caught:
        await in_thread(
            anonymous.secrets.kv.v2.read_secret_version, "x", raise_on_deleted_version=True
        )
    assert caught.value.errors == ["permission denied"]
    stranger = vault_ready.client("hvs.notarealtoken000000000")
    with pytest.raises(exceptions.Forbidden) as caught:
        await in_thread(stranger.auth.token.lookup_self)
    assert caught.value.errors == ["permission denied", "invalid token"]


async def test_default_policy_allows_self_lookup_only(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    created = await in_thread(root.auth.token.create, policies=["default"])
    user = vault_ready.client(created["auth"]["client_token"])
    assert (await in_thread(user.auth.token.lookup_self))["data"]["policies"] == ["default"]
    with pytest.raises(exceptions.Forbidden):
        await in_thread(user.sys.list_mounted_secrets_engines)


async def test_policy_endpoints(vault_ready: ReadyVault, root: hvac.Client) -> None:
    await in_thread(
        root.sys.create_or_update_policy,
        "reader",
        {"path": {"secret/data/*": {"capabilities": ["read"]}}},
    )
    policies = (await in_thread(root.sys.list_policies))["data"]["policies"]
    assert {"default", "root", "reader"} <= set(policies)
    assert "secret/data/*" in (await in_thread(root.sys.read_policy, "reader"))["data"]["rules"]
    acl = root.sys.create_or_update_acl_policy
    await in_thread(acl, "writer", 'path "secret/*" { capabilities = ["create"] }')
    assert (await in_thread(root.sys.read_acl_policy, "writer"))["data"]["name"] == "writer"
    assert "writer" in (await in_thread(root.sys.list_acl_policies))["data"]["keys"]
    with pytest.raises(exceptions.InvalidRequest, match="failed to parse policy"):
        await in_thread(acl, "broken", 'path "x" { capabilities = ["fly"] }')
    with pytest.raises(exceptions.InvalidRequest, match="cannot delete"):
        await in_thread(root.sys.delete_acl_policy, "default")
    await in_thread(root.sys.delete_acl_policy, "writer")
    with pytest.raises(exceptions.InvalidPath):
        await in_thread(root.sys.read_acl_policy, "writer")


def test_priority_rules_and_deny_merge() -> None:
    acl = Acl(
        parse_policy(
            'path "a/*" { capabilities = ["read"] }\npath "a/b/*" { capabilities = ["list"] }'
        )
        + parse_policy(
            'path "a/b/*" { capabilities = ["deny"] }\npath "a/+/c" { capabilities = ["update"] }'
        )
    )
    assert acl.capabilities("a/x") == {"read"}
    assert acl.capabilities("a/b/c") == {"deny"}  # deny merged into a/b/* wins there
    assert acl.allows("a/z/c", "update")  # + beats * when the wildcard comes later
    assert not acl.allows("a/z/c", "read")  # less specific rules do not add up
    assert acl.capabilities("b") == frozenset()


def test_legacy_policy_shorthand() -> None:
    (rule,) = parse_policy('path "x/*" { policy = "write" }')
    assert rule.capabilities == {"create", "read", "update", "delete", "list"}


async def test_ui_mounts_lookup_needs_only_a_valid_token(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    created = await in_thread(root.auth.token.create, policies=["default"])
    user = vault_ready.client(created["auth"]["client_token"])
    mount = await in_thread(user.adapter.get, "/v1/sys/internal/ui/mounts/secret/app/config")
    assert (mount["data"]["path"], mount["data"]["options"]) == ("secret/", {"version": "2"})
