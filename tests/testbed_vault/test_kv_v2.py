"""KV v2 through hvac: the version life cycle, CAS, metadata, PATCH and the error shapes."""

from __future__ import annotations

from typing import Any

import hvac
import pytest
import requests
from hvac import exceptions

from .conftest import ReadyVault, in_thread


def _raw(ready: ReadyVault, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"X-Vault-Token": ready.root_token, **kwargs.pop("headers", {})}
    return requests.request(
        method, f"{ready.address}/v1/{path}", headers=headers, timeout=5, **kwargs
    )


async def test_write_read_versions_and_envelope(vault_ready: ReadyVault, root: hvac.Client) -> None:
    kv = root.secrets.kv.v2
    first = await in_thread(kv.create_or_update_secret, "app/config", secret={"a": "1"})
    assert first["data"]["version"] == 1
    assert first["data"]["deletion_time"] == ""
    assert first["data"]["destroyed"] is False
    assert first["data"]["created_time"].endswith("Z")
    await in_thread(kv.create_or_update_secret, "app/config", secret={"a": "2"})
    latest = await in_thread(kv.read_secret_version, "app/config", raise_on_deleted_version=True)
    for field in (
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "wrap_info",
        "warnings",
        "auth",
        "mount_type",
    ):
        assert field in latest
    assert (latest["lease_id"], latest["renewable"], latest["mount_type"]) == ("", False, "kv")
    assert latest["data"]["data"] == {"a": "2"}
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["data"]["metadata"]["custom_metadata"] is None
    old = await in_thread(
        kv.read_secret_version, "app/config", version=1, raise_on_deleted_version=True
    )
    assert old["data"]["data"] == {"a": "1"}


async def test_missing_key_and_version_are_404_with_empty_errors(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/nope")
    assert (response.status_code, response.json()) == (404, {"errors": []})
    await in_thread(root.secrets.kv.v2.create_or_update_secret, "one", secret={"x": "y"})
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/one?version=7")
    assert (response.status_code, response.json()) == (404, {"errors": []})


async def test_cas(vault_ready: ReadyVault, root: hvac.Client) -> None:
    kv = root.secrets.kv.v2
    await in_thread(kv.create_or_update_secret, "c", secret={"v": "1"}, cas=0)
    with pytest.raises(
        exceptions.InvalidRequest, match="check-and-set parameter did not match the current version"
    ):
        await in_thread(kv.create_or_update_secret, "c", secret={"v": "x"}, cas=0)
    with pytest.raises(exceptions.InvalidRequest, match="did not match"):
        await in_thread(kv.create_or_update_secret, "c", secret={"v": "x"}, cas=5)
    written = await in_thread(kv.create_or_update_secret, "c", secret={"v": "2"}, cas=1)
    assert written["data"]["version"] == 2
    response = await in_thread(
        _raw,
        vault_ready,
        "POST",
        "secret/data/c",
        json={"data": {"v": "3"}, "options": {"cas": "two"}},
    )
    assert response.json() == {"errors": ["error parsing check-and-set parameter"]}
    response = await in_thread(_raw, vault_ready, "POST", "secret/data/c", json={"options": {}})
    assert (response.status_code, response.json()) == (400, {"errors": ["no data provided"]})
    # cas_required on the key, then on the mount.
    await in_thread(kv.update_metadata, "c", cas_required=True)
    with pytest.raises(
        exceptions.InvalidRequest, match="check-and-set parameter required for this call"
    ):
        await in_thread(kv.create_or_update_secret, "c", secret={"v": "3"})
    await in_thread(kv.configure, cas_required=True)
    with pytest.raises(exceptions.InvalidRequest, match="required"):
        await in_thread(kv.create_or_update_secret, "other", secret={"v": "1"})
    assert (await in_thread(kv.create_or_update_secret, "other", secret={"v": "1"}, cas=0))["data"][
        "version"
    ] == 1


async def test_delete_undelete_destroy(vault_ready: ReadyVault, root: hvac.Client) -> None:
    kv = root.secrets.kv.v2
    for value in ("1", "2", "3"):
        await in_thread(kv.create_or_update_secret, "d", secret={"v": value})
    await in_thread(kv.delete_latest_version_of_secret, "d")
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/d")
    assert response.status_code == 404
    body = response.json()
    assert body["data"]["data"] is None  # the envelope, not {"errors": []}
    assert body["data"]["metadata"]["version"] == 3
    assert body["data"]["metadata"]["deletion_time"] != ""
    with pytest.raises(exceptions.InvalidPath):
        await in_thread(kv.read_secret_version, "d", raise_on_deleted_version=True)
    # A soft-deleted latest still counts for CAS.
    with pytest.raises(exceptions.InvalidRequest):
        await in_thread(kv.create_or_update_secret, "d", secret={"v": "x"}, cas=2)
    await in_thread(kv.undelete_secret_versions, "d", versions=[3])
    assert (await in_thread(kv.read_secret_version, "d", raise_on_deleted_version=True))["data"][
        "data"
    ] == {"v": "3"}
    await in_thread(kv.delete_secret_versions, "d", versions=[1, 2])
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/d?version=1")
    assert response.status_code == 404
    await in_thread(kv.destroy_secret_versions, "d", versions=[2])
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/d?version=2")
    assert response.json()["data"]["metadata"]["destroyed"] is True
    await in_thread(kv.undelete_secret_versions, "d", versions=[1, 2])
    assert (await in_thread(kv.read_secret_version, "d", version=1, raise_on_deleted_version=True))[
        "data"
    ]["data"] == {"v": "1"}
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/d?version=2")
    assert response.status_code == 404  # destroyed is forever
    metadata = (await in_thread(kv.read_secret_metadata, "d"))["data"]
    assert metadata["versions"]["2"]["destroyed"] is True
    assert metadata["versions"]["1"]["deletion_time"] == ""
    response = await in_thread(_raw, vault_ready, "POST", "secret/delete/d", json={"versions": []})
    assert response.json() == {"errors": ["no version number provided"]}
    await in_thread(kv.delete_metadata_and_all_versions, "d")
    response = await in_thread(_raw, vault_ready, "GET", "secret/metadata/d")
    assert response.status_code == 404


async def test_metadata_and_custom_metadata_limits(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    kv = root.secrets.kv.v2
    await in_thread(kv.update_metadata, "m", max_versions=2, custom_metadata={"owner": "team-a"})
    for value in ("1", "2", "3"):
        await in_thread(kv.create_or_update_secret, "m", secret={"v": value})
    metadata = (await in_thread(kv.read_secret_metadata, "m"))["data"]
    assert (metadata["current_version"], metadata["oldest_version"], metadata["max_versions"]) == (
        3,
        2,
        2,
    )
    assert sorted(metadata["versions"]) == ["2", "3"]
    assert metadata["custom_metadata"] == {"owner": "team-a"}
    assert metadata["delete_version_after"] == "0s"
    assert metadata["cas_required"] is False
    for field in ("created_time", "updated_time"):
        assert metadata[field].endswith("Z")
    read = await in_thread(kv.read_secret_version, "m", raise_on_deleted_version=True)
    assert read["data"]["metadata"]["custom_metadata"] == {"owner": "team-a"}
    cases = [
        ({f"k{i}": "v" for i in range(65)}, "payload must contain at most 64 keys, provided 65"),
        ({"k" * 129: "v"}, "but must be 0 < len(key) <= 128"),
        ({"k": "v" * 513}, "but must be 0 < len(value) <= 512"),
    ]
    for custom, message in cases:
        response = await in_thread(
            _raw, vault_ready, "POST", "secret/metadata/m", json={"custom_metadata": custom}
        )
        assert response.status_code == 400
        (error,) = response.json()["errors"]
        assert "custom_metadata validation failed: " in error
        assert message in error
    ok = {f"k{i}": "v" * 512 for i in range(64)}
    response = await in_thread(
        _raw, vault_ready, "POST", "secret/metadata/m", json={"custom_metadata": ok}
    )
    assert response.status_code == 204
    # metadata POST creates no version
    assert (await in_thread(kv.read_secret_metadata, "m"))["data"]["current_version"] == 3


async def test_delete_version_after_uses_the_clock(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    kv = root.secrets.kv.v2
    await in_thread(kv.update_metadata, "t", delete_version_after="1h")
    await in_thread(kv.create_or_update_secret, "t", secret={"v": "1"})
    assert (await in_thread(kv.read_secret_metadata, "t"))["data"][
        "delete_version_after"
    ] == "1h0m0s"
    assert (await in_thread(kv.read_secret_version, "t", raise_on_deleted_version=True))["data"][
        "data"
    ] == {"v": "1"}
    vault_ready.vault.admin.advance_clock(3601)
    response = await in_thread(_raw, vault_ready, "GET", "secret/data/t")
    assert response.status_code == 404
    assert response.json()["data"]["data"] is None


# hvac's own patch() reads with a deprecated default; that warning is hvac's, not ours.
@pytest.mark.filterwarnings("ignore:The raise_on_deleted_version parameter:DeprecationWarning")
async def test_patch_needs_merge_patch_content_type(
    vault_ready: ReadyVault, root: hvac.Client
) -> None:
    await in_thread(
        root.secrets.kv.v2.create_or_update_secret, "p", secret={"a": "1", "b": "2", "c": {"x": 1}}
    )
    response = await in_thread(
        _raw, vault_ready, "PATCH", "secret/data/p", json={"data": {"a": "9"}}
    )
    assert response.status_code == 415
    merge = {"Content-Type": "application/merge-patch+json"}
    body = {"data": {"a": "9", "b": None, "c": {"y": 2}}, "options": {"cas": 1}}
    response = await in_thread(
        _raw, vault_ready, "PATCH", "secret/data/p", json=body, headers=merge
    )
    assert response.status_code == 200
    assert response.json()["data"]["version"] == 2
    read = await in_thread(
        root.secrets.kv.v2.read_secret_version, "p", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"a": "9", "c": {"x": 1, "y": 2}}
    response = await in_thread(
        _raw, vault_ready, "PATCH", "secret/data/p", json=body, headers=merge
    )
    assert response.json() == {
        "errors": ["check-and-set parameter did not match the current version"]
    }
    response = await in_thread(
        _raw, vault_ready, "PATCH", "secret/data/absent", json={"data": {"a": "1"}}, headers=merge
    )
    assert response.status_code == 404
    # hvac's patch (read + CAS write) works as well
    await in_thread(root.secrets.kv.v2.patch, "p", {"d": "4"})
    read = await in_thread(
        root.secrets.kv.v2.read_secret_version, "p", raise_on_deleted_version=True
    )
    assert read["data"]["data"]["d"] == "4"


async def test_list_with_list_method_and_query(vault_ready: ReadyVault, root: hvac.Client) -> None:
    kv = root.secrets.kv.v2
    for path in ("team/a", "team/b", "team/sub/c", "top"):
        await in_thread(kv.create_or_update_secret, path, secret={"v": "1"})
    listed = await in_thread(kv.list_secrets, "team")
    assert listed["data"]["keys"] == ["a", "b", "sub/"]
    assert (await in_thread(kv.list_secrets, ""))["data"]["keys"] == ["team/", "top"]
    response = await in_thread(_raw, vault_ready, "GET", "secret/metadata/team/?list=true")
    assert response.json()["data"]["keys"] == ["a", "b", "sub/"]
    response = await in_thread(_raw, vault_ready, "LIST", "secret/metadata/empty/")
    assert (response.status_code, response.json()) == (404, {"errors": []})


async def test_v1_style_path_on_a_v2_mount_warns(vault_ready: ReadyVault) -> None:
    response = await in_thread(_raw, vault_ready, "GET", "secret/foo")
    assert response.status_code == 404
    body = response.json()
    assert body["data"] is None
    assert body["warnings"][0].startswith("Invalid path for a versioned K/V secrets engine.")


async def test_mount_config(vault_ready: ReadyVault, root: hvac.Client) -> None:
    kv = root.secrets.kv.v2
    config = (await in_thread(kv.read_configuration))["data"]
    assert config == {"cas_required": False, "delete_version_after": "0s", "max_versions": 0}
    await in_thread(kv.configure, max_versions=3, delete_version_after="90s")
    config = (await in_thread(kv.read_configuration))["data"]
    assert (config["max_versions"], config["delete_version_after"]) == (3, "1m30s")
    for value in range(5):
        await in_thread(kv.create_or_update_secret, "pruned", secret={"v": value})
    assert (await in_thread(kv.read_secret_metadata, "pruned"))["data"]["oldest_version"] == 3


async def test_mounts_at_any_path_and_disable(vault_ready: ReadyVault, root: hvac.Client) -> None:
    await in_thread(root.sys.enable_secrets_engine, "kv", path="team/kv", options={"version": "2"})
    await in_thread(root.sys.enable_secrets_engine, "kv-v2", path="other")
    await in_thread(root.sys.enable_secrets_engine, "kv", path="legacy")
    mounts = (await in_thread(root.sys.list_mounted_secrets_engines))["data"]
    assert mounts["team/kv/"]["options"] == {"version": "2"}
    assert (mounts["other/"]["type"], mounts["other/"]["options"]) == ("kv", {"version": "2"})
    assert mounts["legacy/"]["options"] is None
    await in_thread(
        root.secrets.kv.v2.create_or_update_secret, "x", secret={"v": "1"}, mount_point="team/kv"
    )
    with pytest.raises(exceptions.InvalidRequest, match="path is already in use at team/kv/"):
        await in_thread(root.sys.enable_secrets_engine, "kv", path="team/kv")
    await in_thread(root.sys.disable_secrets_engine, "team/kv")
    response = await in_thread(_raw, vault_ready, "GET", "team/kv/data/x")
    assert response.status_code == 404
    assert response.json()["errors"] == [
        'no handler for route "team/kv/data/x". route entry not found.'
    ]
