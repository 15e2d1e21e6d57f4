"""sys/init, sys/seal-status, sys/unseal and sys/seal: the state machine of reference §1.2-1.5."""

from __future__ import annotations

import base64
import itertools

import hvac
import pytest
import requests
from hvac import exceptions

from testbed.vault import running_vault, sealing, shamir
from testbed.vault.cluster import RunningVault

from .conftest import in_thread


def _post(address: str, path: str, body: object) -> requests.Response:
    return requests.put(f"{address}/v1/{path}", json=body, timeout=5)


async def test_init_5_3_and_unseal_with_hex_shares(
    vault: RunningVault, client: hvac.Client
) -> None:
    assert (await in_thread(client.sys.read_init_status))["initialized"] is False
    init = await in_thread(client.sys.initialize, 5, 3)
    assert len(init["keys"]) == len(init["keys_base64"]) == 5
    assert all(k == k.lower() and len(k) == 66 for k in init["keys"])
    assert [base64.b64decode(b) for b in init["keys_base64"]] == [
        bytes.fromhex(k) for k in init["keys"]
    ]
    assert init["root_token"].startswith("hvs.")
    status = await in_thread(client.sys.read_seal_status)
    assert (status["sealed"], status["t"], status["n"], status["progress"]) == (True, 3, 5, 0)
    first = await in_thread(client.sys.submit_unseal_key, init["keys"][0])
    assert (first["sealed"], first["progress"]) == (True, 1)
    assert len(first["nonce"]) == 36
    second = await in_thread(client.sys.submit_unseal_key, init["keys"][3])
    assert second["progress"] == 2
    assert second["nonce"] == first["nonce"]
    done = await in_thread(client.sys.submit_unseal_key, init["keys"][4])
    assert done["sealed"] is False
    assert (done["progress"], done["nonce"]) == (0, "")
    assert done["cluster_name"].startswith("vault-cluster-")
    assert "cluster_id" in done
    assert (await in_thread(client.sys.read_init_status))["initialized"] is True


async def test_unseal_with_base64_shares(vault: RunningVault, client: hvac.Client) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    status = await in_thread(client.sys.submit_unseal_keys, init["keys_base64"][1:4])
    assert status["sealed"] is False


async def test_duplicate_share_is_ignored(vault: RunningVault, client: hvac.Client) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    key = init["keys"][0]
    await in_thread(client.sys.submit_unseal_key, key)
    again = await in_thread(client.sys.submit_unseal_key, key)
    assert (again["sealed"], again["progress"]) == (True, 1)
    # The same share in base64 is the same bytes: still a duplicate.
    again = await in_thread(client.sys.submit_unseal_key, init["keys_base64"][0])
    assert again["progress"] == 1


@pytest.mark.parametrize("status_code", [400, 500])
async def test_wrong_share_set_fails_at_threshold_and_clears_progress(status_code: int) -> None:
    async with running_vault(wrong_key_status=status_code) as vault:
        client = hvac.Client(url=vault.address)
        init = await in_thread(client.sys.initialize, 5, 3)
        other = await in_thread(_other_vault_keys)
        # Shares carry a random x-coordinate (their last byte): one equal to a right share's
        # makes the set fail as "duplicate part detected" instead, 2 times in 255 if unchosen.
        taken = {bytes.fromhex(k)[-1] for k in init["keys"][:2]}
        wrong = next(k for k in other if bytes.fromhex(k)[-1] not in taken)
        keys = [init["keys"][0], init["keys"][1], wrong]
        for key in keys[:2]:
            status = await in_thread(client.sys.submit_unseal_key, key)
            assert status["sealed"] is True  # a wrong share is not detected early
        response = await in_thread(_post, vault.address, "sys/unseal", {"key": keys[2]})
        assert response.status_code == status_code
        (message,) = response.json()["errors"]
        assert message.startswith("unable to retrieve stored keys: invalid key: ")
        assert message.endswith("cipher: message authentication failed")
        status = await in_thread(client.sys.read_seal_status)
        assert (status["sealed"], status["progress"], status["nonce"]) == (True, 0, "")
        # The right shares still work afterwards.
        status = await in_thread(client.sys.submit_unseal_keys, init["keys"][2:5])
        assert status["sealed"] is False


def _other_vault_keys() -> list[str]:
    """Shares of an unrelated key: combine cleanly, decrypt nothing."""
    return [s.hex() for s in shamir.split(b"\x42" * 32, parts=5, threshold=3)]


async def test_wrong_key_status_switch_through_admin(
    vault: RunningVault, client: hvac.Client
) -> None:
    vault.admin.set_wrong_key_status(500)
    init = await in_thread(client.sys.initialize, 1, 1)
    wrong = "00" * 32
    response = await in_thread(_post, vault.address, "sys/unseal", {"key": wrong})
    assert response.status_code == 500
    with pytest.raises(ValueError, match="400"):
        vault.admin.set_wrong_key_status(418)
    vault.admin.set_wrong_key_status(400)
    response = await in_thread(_post, vault.address, "sys/unseal", {"key": wrong})
    assert response.status_code == 400
    assert (await in_thread(client.sys.submit_unseal_key, init["keys"][0]))["sealed"] is False


async def test_shares_from_the_same_x_fail_to_combine(
    vault: RunningVault, client: hvac.Client
) -> None:
    init = await in_thread(client.sys.initialize, 3, 2)
    share = bytearray(bytes.fromhex(init["keys"][0]))
    twin = bytes(share[:-1][::-1]) + bytes(share[-1:])  # different bytes, same x coordinate
    await in_thread(client.sys.submit_unseal_key, init["keys"][0])
    response = await in_thread(_post, vault.address, "sys/unseal", {"key": twin.hex()})
    assert response.status_code == 400
    assert response.json() == {
        "errors": ["invalid key: failed to compute combined key: duplicate part detected"]
    }
    assert (await in_thread(client.sys.read_seal_status))["progress"] == 0


async def test_reset_clears_the_pool(vault: RunningVault, client: hvac.Client) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    await in_thread(client.sys.submit_unseal_key, init["keys"][0])
    status = await in_thread(client.sys.submit_unseal_key, reset=True)
    assert (status["progress"], status["nonce"], status["sealed"]) == (0, "", True)
    await in_thread(client.sys.submit_unseal_keys, init["keys"][:3])
    response = await in_thread(_post, vault.address, "sys/unseal", {"reset": True})
    assert (response.status_code, response.json()) == (400, {"errors": ["vault is unsealed"]})


async def test_already_unsealed_answers_200_with_status(
    vault: RunningVault, client: hvac.Client
) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    await in_thread(client.sys.submit_unseal_keys, init["keys"][:3])
    status = await in_thread(client.sys.submit_unseal_key, init["keys"][4])
    assert (status["sealed"], status["progress"]) == (False, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'key' must be specified in request body as JSON, or 'reset' set to true"),
        ({"key": "not hex or base64!"}, "'key' must be a valid hex or base64 string"),
        ({"key": "asdf"}, "invalid key: key is shorter than minimum 16 bytes"),
        ({"key": "ab" * 34}, "invalid key: key is longer than maximum 33 bytes"),
        (
            {"key": base64.b64encode(b"x" * 40).decode()},
            "invalid key: key is longer than maximum 33 bytes",
        ),
    ],
)
async def test_unseal_input_errors(
    vault: RunningVault, client: hvac.Client, body: dict[str, str], message: str
) -> None:
    await in_thread(client.sys.initialize, 5, 3)
    response = await in_thread(_post, vault.address, "sys/unseal", body)
    assert (response.status_code, response.json()) == (400, {"errors": [message]})
    assert (await in_thread(client.sys.read_seal_status))["progress"] == 0


async def test_unseal_body_keys_match_case_insensitively(
    vault: RunningVault, client: hvac.Client
) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    response = await in_thread(_post, vault.address, "sys/unseal", {"Key": init["keys"][0]})
    assert response.json()["progress"] == 1


async def test_unseal_before_init_and_wrong_methods(vault: RunningVault) -> None:
    response = await in_thread(_post, vault.address, "sys/unseal", {"key": "ab" * 33})
    assert (response.status_code, response.json()) == (
        400,
        {"errors": ["Vault is not initialized"]},
    )
    response = await in_thread(requests.get, f"{vault.address}/v1/sys/unseal", timeout=5)
    assert response.status_code == 405
    response = await in_thread(requests.post, f"{vault.address}/v1/sys/seal-status", timeout=5)
    assert response.status_code == 405


@pytest.mark.parametrize(
    ("shares", "threshold", "message"),
    [
        (0, 0, "shares must be at least one"),
        (3, 0, "threshold must be at least one"),
        (3, 1, "threshold must be greater than one for multiple shares"),
        (256, 3, "shares must be less than 256"),
        (3, 4, "threshold cannot be larger than shares"),
    ],
)
async def test_init_validation(
    vault: RunningVault, shares: int, threshold: int, message: str
) -> None:
    body = {"secret_shares": shares, "secret_threshold": threshold}
    response = await in_thread(_post, vault.address, "sys/init", body)
    assert response.status_code == 400
    assert response.json() == {"errors": [f"invalid seal configuration: {message}"]}


async def test_init_twice_and_recovery_parameters(vault: RunningVault, client: hvac.Client) -> None:
    body = {"secret_shares": 1, "secret_threshold": 1, "recovery_shares": 5}
    response = await in_thread(_post, vault.address, "sys/init", body)
    assert response.json() == {"errors": ["parameters specific to auto unseal seals present"]}
    await in_thread(client.sys.initialize, 1, 1)
    with pytest.raises(exceptions.InvalidRequest, match="Vault is already initialized"):
        await in_thread(client.sys.initialize, 1, 1)


async def test_sealed_vault_answers_503_everywhere_but_status(
    vault: RunningVault, client: hvac.Client
) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    client.token = init["root_token"]
    for call in (
        lambda: client.secrets.kv.v2.read_secret_version("x", raise_on_deleted_version=True),
        client.auth.token.lookup_self,
        client.sys.list_mounted_secrets_engines,
        lambda: client.read("nothing/here"),
    ):
        with pytest.raises(exceptions.VaultDown) as caught:
            await in_thread(call)
        assert caught.value.errors == ["Vault is sealed"]
    response = await in_thread(
        requests.post, f"{vault.address}/v1/auth/kubernetes/login", json={}, timeout=5
    )
    assert (response.status_code, response.json()) == (503, {"errors": ["Vault is sealed"]})


async def test_uninitialised_vault_is_sealed_for_logical_paths(vault: RunningVault) -> None:
    response = await in_thread(requests.get, f"{vault.address}/v1/secret/data/x", timeout=5)
    assert (response.status_code, response.json()) == (503, {"errors": ["Vault is sealed"]})


async def test_sys_seal_needs_root_and_returns_204(
    vault: RunningVault, client: hvac.Client
) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    await in_thread(client.sys.submit_unseal_keys, init["keys"][:3])
    client.token = init["root_token"]
    child = await in_thread(client.auth.token.create, policies=["default"])
    limited = hvac.Client(url=vault.address, token=child["auth"]["client_token"])
    with pytest.raises(exceptions.Forbidden):
        await in_thread(limited.sys.seal)
    response = await in_thread(
        requests.get,
        f"{vault.address}/v1/sys/seal",
        headers={"X-Vault-Token": init["root_token"]},
        timeout=5,
    )
    assert response.status_code == 405
    response = await in_thread(
        requests.put,
        f"{vault.address}/v1/sys/seal",
        headers={"X-Vault-Token": init["root_token"]},
        timeout=5,
    )
    assert (response.status_code, response.content) == (204, b"")
    assert (await in_thread(client.sys.read_seal_status))["sealed"] is True
    # Sealing a sealed node: it is sealed, so 503.
    response = await in_thread(
        requests.put,
        f"{vault.address}/v1/sys/seal",
        headers={"X-Vault-Token": init["root_token"]},
        timeout=5,
    )
    assert response.status_code == 503


def test_every_three_subset_unseals() -> None:
    """Each of the C(5,3) share subsets rebuilds the key (pure Python, no server needed)."""
    config, keys = sealing.create(shares=5, threshold=3)
    for subset in itertools.combinations(keys, 3):
        assert len(sealing.open_keyring(config, shamir.combine(list(subset)))) == 32
    with pytest.raises(sealing.KeyringError):
        sealing.open_keyring(config, shamir.combine(keys[:2]))
