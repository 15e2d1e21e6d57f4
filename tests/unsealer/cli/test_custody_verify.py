"""``unsealer custody verify``: custodians, shares against Vault, consistency, the invariant."""

from __future__ import annotations

import hmac
import os
import socket
from hashlib import sha256
from typing import Any

FINGERPRINT_KEY = "00112233445566778899aabbccddeeff"


def _layout(keys: list[bytes]) -> dict[str, list[bytes]]:
    """Three custodians, two shares each, five shares in all: no custodian holds three."""
    return {"kube-a": [keys[0], keys[1]], "kube-b": [keys[2], keys[3]],
            "disk": [keys[4], keys[0]]}


def _fingerprint(material: bytes) -> str:
    return hmac.new(bytes.fromhex(FINGERPRINT_KEY), material, sha256).hexdigest()[:16]


async def _verify(world: Any, config: Any, *extra: str) -> Any:
    return await world.cli(
        "custody", "verify", "--custody-config", str(config), *world.pod_args(),
        "--fingerprint-key", FINGERPRINT_KEY, *extra)


async def test_a_good_custody_passes_and_shows_fingerprints_only(world: Any) -> None:
    keys = world.bootstrap(shares=5, threshold=3).keys
    world.place(_layout(keys))

    run = await _verify(world, world.custody_config())

    assert run.rc == 0, run
    assert run.out.splitlines()[-1] == "Result: OK"
    assert f"Vault vault-0 (http://127.0.0.2:{world.port}): initialised, unsealed, " \
           "threshold 3 of 5 shares" in run.out
    for name in ("kube-a", "kube-b", "disk"):
        assert any(line.split()[:2] == [name, "reachable"] for line in run.out.splitlines())
    # Every share held is listed by custodian/slot with its keyed fingerprint.
    assert f"kube-a/share-1  fingerprint {_fingerprint(keys[0])}" in run.out
    assert f"kube-b/share-2  fingerprint {_fingerprint(keys[3])}" in run.out
    assert f"disk/line2  fingerprint {_fingerprint(keys[0])}" in run.out
    assert "Shares: 5 distinct of Vault's 5" in run.out
    assert "Consistency: all 6 shares agree on one key" in run.out
    assert "Invariant: holds" in run.out


async def test_one_custodian_down_is_named(world: Any) -> None:
    world.place(_layout(world.bootstrap().keys))
    world.kube.faults.error(503, verbs=["get"], resource="secrets", name="unseal-b")

    run = await _verify(world, world.custody_config())

    assert run.rc == 1, run
    assert any(line.split()[:2] == ["kube-b", "UNREACHABLE"] for line in run.out.splitlines())
    assert any(line.split()[:2] == ["kube-a", "reachable"] for line in run.out.splitlines())
    line = run.error_line()
    assert line.startswith("unsealer custody verify: error: 1 problem(s): custodian 'kube-b' "
                           "is unreachable: custodian 'kube-b': cannot read Secret "
                           "vault-custody-b/unseal-b: 503")
    # What is left still unseals (3 distinct shares) and still agrees.
    assert "Shares: 3 distinct of Vault's 5" in run.out


async def test_a_corrupt_share_is_named_by_custodian_and_slot(world: Any) -> None:
    keys = world.bootstrap().keys
    corrupt = bytearray(keys[0])
    corrupt[5] ^= 0x5A
    world.register_shares([bytes(corrupt)])
    layout = _layout(keys)
    layout["kube-a"] = [bytes(corrupt), keys[1]]  # disk still holds the good copy of key 1
    world.place(layout)

    run = await _verify(world, world.custody_config())

    assert run.rc == 1, run
    line = run.error_line()
    assert "share kube-a/share-1 does not agree with the others: corrupt, or from another " \
           "Vault" in line
    assert "disk/line2" not in line and "kube-a/share-2" not in line
    assert "hold 6 distinct shares but Vault made only 5" in line
    assert "Consistency: 5 share(s) agree; inconsistent: kube-a/share-1" in run.out


async def test_an_invariant_violation_in_the_config_is_refused_in_one_line(world: Any) -> None:
    keys = world.bootstrap().keys
    world.place({"kube-a": [keys[0], keys[1]], "kube-b": [], "disk": keys[2:5]})
    config = world.custody_config(counts={"disk": 3, "kube-b": 0})

    run = await _verify(world, config)

    assert run.rc == 2, run
    assert run.err_lines == [
        f"unsealer custody verify: error: split custody does not hold: place "
        f"node/{socket.gethostname()} (disk) alone yields 3 shares, and the threshold is 3"]
    assert run.out == ""


async def test_an_invariant_violation_found_by_reading_fails_with_the_places(
    world: Any,
) -> None:
    """The config says 2 each; the disk holds 3: found by reading, the table says where."""
    keys = world.bootstrap().keys
    world.place({"kube-a": [keys[0], keys[1]], "kube-b": [keys[3]], "disk": keys[2:5]})

    run = await _verify(world, world.custody_config())

    assert run.rc == 2, run
    assert run.error_line() == (
        "unsealer custody verify: error: 1 problem(s): split custody does not hold: place "
        f"node/{socket.gethostname()} (disk) alone yields 3 shares, and the threshold is 3")
    assert "Invariant: VIOLATED (1 way(s))" in run.out
    lines = run.out.splitlines()
    table = lines[lines.index("Places (threshold 3):") + 1:][:4]
    assert [line.split() for line in table] == [
        ["place", "custodians", "shares", "margin"],
        ["namespace/vault-custody", "kube-a", "2", "1"],
        ["namespace/vault-custody-b", "kube-b", "1", "2"],
        [f"node/{socket.gethostname()}", "disk", "3", "NONE"]]


async def test_config_disagreeing_with_vault(world: Any) -> None:
    world.place(_layout(world.bootstrap().keys))
    run = await _verify(world, world.custody_config(threshold=4, shares=5))
    assert run.rc == 1
    assert "the custody config says threshold 4, Vault says 3" in run.error_line()


async def test_an_unusable_config_is_one_line_and_exit_2(world: Any) -> None:
    config = world.directory / "bad.yaml"
    config.write_text("custodians:\n  - name: a\n    kind: kubernetesSecret\n"
                      "    namespace: vault\n    secretName: s\n")
    run = await _verify(world, config)
    assert run.rc == 2
    assert run.error_line().startswith(
        f"unsealer custody verify: error: custody config {config}: custodian 'a': field "
        "'namespace': must not be Vault's namespace")

    loose = world.custody_config()
    world.disk_path.write_text("")
    os.chmod(world.disk_path, 0o644)
    run = await _verify(world, loose)
    assert run.rc == 2
    assert "must be 0600" in run.error_line()
