"""``unsealer init``: sys/init straight into split custody, losing nothing and showing nothing."""

from __future__ import annotations

import itertools
import re
import socket
import stat
from typing import Any

import pyshamir

from unsealer.shares import Share

EMPTY = {"kube-a": [], "kube-b": [], "disk": []}


def _init_args(world: Any, *extra: str, config: Any = None) -> list[str]:
    return ["init", "--custody-config", str(config or world.custody_config()),
            *world.pod_args(), *extra]


def _agree(shares: list[bytes], threshold: int) -> bool:
    """Every threshold-sized subset combines to the same key: one consistent set."""
    keys = {bytes(pyshamir.combine(list(subset)))
            for subset in itertools.combinations(shares, threshold)}
    return len(keys) == 1


async def test_init_then_the_custodians_unseal_vault(world: Any) -> None:
    token_file = world.directory / "root-token"

    run = await world.cli(*_init_args(world, "--root-token-file", str(token_file)))

    held = world.held_everywhere()
    world.register_shares(share for shares in held.values() for share in shares)
    root_token = token_file.read_text().strip()
    world.root_tokens.add(root_token)
    assert run.rc == 0, run
    assert run.out.splitlines()[:4] == [
        f"Vault initialised at vault-0 (http://127.0.0.2:{world.port}): 5 shares, threshold 3",
        f"Root token written to {token_file} (mode 0600)",
        "Stored 5 unseal key(s), threshold 3:",
        "  unseal key 1: kube-a, disk",
    ]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert {name: len(shares) for name, shares in held.items()} == {
        "kube-a": 2, "kube-b": 2, "disk": 2}
    distinct = list(dict.fromkeys(share for shares in held.values() for share in shares))
    assert len(distinct) == 5 and _agree(distinct, 3)
    assert all(len(held[name]) < 3 for name in held)  # no custodian can unseal alone

    # The proof: the shares the custodians hold unseal both Vault nodes through sys/unseal,
    # and the root token works.
    for node in (0, 1):
        assert (await world.unseal(distinct[:3], node=node))["sealed"] is False
    status, body = await world.vault_call("GET", "auth/token/lookup-self", token=root_token)
    assert status == 200 and body["data"]["policies"] == ["root"]


async def test_without_a_place_for_the_root_token_init_refuses_to_start(world: Any) -> None:
    run = await world.cli(*_init_args(world))
    assert run.rc == 2
    assert run.error_line() == (
        "unsealer init: error: refusing to initialise: the root token would be lost. Pass "
        "--root-token-custodian NAME, --root-token-file PATH (a new 0600 file) or "
        "--print-root-token")
    assert (await world.seal_status())["initialized"] is False


async def test_init_over_plain_http_needs_the_explicit_opt_in(world: Any) -> None:
    # Vault's answer to sys/init is every share and the root token: over http, whoever answers
    # at the pod's IP, or reads the wire, would have them all.
    args = [a for a in _init_args(world, "--print-root-token") if a != "--allow-plain-http"]
    run = await world.cli(*args)
    assert run.rc == 2, run
    line = run.error_line()
    assert line.startswith("unsealer init: error: --address-template http://"), line
    assert "--allow-plain-http" in line and "Vault was not initialised" in line
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert (await world.seal_status())["initialized"] is False


async def test_init_says_to_record_a_seal_the_config_does_not_state(world: Any) -> None:
    config = world.custody_config(threshold=None, shares=None)
    run = await world.cli(*_init_args(world, "--shares", "5", "--threshold", "3",
                                      "--print-root-token", config=config))
    world.register_shares(s for shares in world.held_everywhere().values() for s in shares)
    world.root_tokens.update(re.findall(r"^Initial Root Token: (\S+)$", run.out, re.MULTILINE))
    assert run.rc == 0, run
    assert (f"Record the seal in {config}: threshold: 3, shares: 5 (unsealer run checks "
            "custody, and Vault's seal-status, against it)") in run.out.splitlines()


async def test_print_root_token_prints_it_once(world: Any) -> None:
    run = await world.cli(*_init_args(world, "--print-root-token"))
    world.register_shares(s for shares in world.held_everywhere().values() for s in shares)
    assert run.rc == 0, run
    match = re.search(r"^Initial Root Token: (\S+)$", run.out, re.MULTILINE)
    assert match is not None
    world.root_tokens.add(match[1])
    assert run.out.count(match[1]) == 1


async def test_a_failing_custodian_loses_no_share(world: Any, share_lines: Any) -> None:
    # The Secret exists, empty (made by whoever set up the RBAC), and refuses every write.
    world.place({"kube-b": []})
    world.kube.faults.error(500, verbs=["patch", "update"], resource="secrets", name="unseal-b")
    token_file = world.directory / "root-token"

    run = await world.cli(*_init_args(world, "--root-token-file", str(token_file)))

    held = world.held_everywhere()
    fallbacks = list(world.workdir.glob("unsealer-undelivered-*.txt"))
    assert len(fallbacks) == 1, run
    rescued = share_lines(fallbacks[0].read_text())
    world.register_shares([*rescued, *(s for shares in held.values() for s in shares)])
    world.root_tokens.add(token_file.read_text().strip())
    assert run.rc == 1, run
    line = run.error_line()
    assert line.startswith("unsealer init: error: custodians kube-b could not store their "
                           "shares (custodian 'kube-b': cannot write Secret "
                           "vault-custody-b/unseal-b: 500")
    assert f"Their shares were written to {fallbacks[0]} (mode 0600)" in line
    assert stat.S_IMODE(fallbacks[0].stat().st_mode) == 0o600
    assert held["kube-b"] == [] and len(rescued) == 2
    everything = list(dict.fromkeys([*held["kube-a"], *held["disk"], *rescued]))
    assert len(everything) == 5 and _agree(everything, 3)  # all five, none lost
    assert (await world.unseal(everything[:3], node=0))["sealed"] is False


async def test_pgp_keys_are_refused(world: Any) -> None:
    key_file = world.directory / "alice.asc"
    key_file.write_text("not even read")
    run = await world.cli(*_init_args(world, "--print-root-token", "--pgp-key", str(key_file)))
    assert run.rc == 2
    assert run.error_line().startswith(
        "unsealer init: error: --pgp-key is refused: with PGP keys Vault returns every share "
        "encrypted to a person's key")
    assert (await world.seal_status())["initialized"] is False


async def test_an_initialised_vault_is_left_alone(world: Any) -> None:
    world.bootstrap()
    run = await world.cli(*_init_args(world, "--print-root-token"))
    assert run.rc == 1
    assert run.error_line() == (
        "unsealer init: error: Vault is already initialised (vault-0 says so); nothing done")
    assert world.held_everywhere() == EMPTY


async def test_custody_that_cannot_take_the_shares_refuses_before_sys_init(world: Any) -> None:
    token_file = world.directory / "root-token"
    world.place({"disk": [b"\x07" * 33]})
    world.register_shares([b"\x07" * 33])
    occupied = await world.cli(*_init_args(world, "--root-token-file", str(token_file)))
    assert occupied.rc == 2
    assert occupied.error_line() == (
        "unsealer init: error: custodian 'disk' already holds 1 share entries (of another "
        "Vault?). Clear it or pass --replace to overwrite. Vault was not initialised")

    world.disk_path.unlink()
    unsafe = await world.cli(*_init_args(
        world, "--root-token-file", str(token_file),
        config=world.custody_config(counts={"disk": 3, "kube-a": 1, "kube-b": 1})))
    assert unsafe.rc == 2
    assert unsafe.error_line().endswith(
        "unsealer init: error: split custody does not hold: place node/"
        f"{socket.gethostname()} (disk) alone yields 3 shares, and the threshold is 3")
    few = await world.cli(*_init_args(
        world, "--root-token-file", str(token_file),
        config=world.custody_config(counts={"disk": 1, "kube-a": 1, "kube-b": 1})))
    assert few.rc == 2
    assert "no safe way to place 5 shares with threshold 3" in few.error_line()

    mismatch = await world.cli(*_init_args(world, "--root-token-file", str(token_file),
                                           "--threshold", "2"))
    assert mismatch.rc == 2
    assert "--threshold 2 differs from the custody config" in mismatch.error_line()

    assert (await world.seal_status())["initialized"] is False
    assert not token_file.exists()  # nothing was left behind either
    assert world.held_everywhere() == EMPTY


async def test_init_by_address_with_file_custody_needs_no_kubernetes(world: Any) -> None:
    directory = world.directory / "custody"
    directory.mkdir(exist_ok=True)
    config = world.directory / "files.yaml"
    config.write_text("threshold: 2\nshares: 3\ncustodians:\n" + "".join(
        f"  - {{name: f{n}, kind: file, path: {directory / f'f{n}'}, shares: 1, "
        f"place: disk-{n}}}\n"
        for n in range(3)))

    run = await world.cli("init", "--custody-config", str(config), "--address",
                          world.vault.address, "--print-root-token", "--allow-plain-http")

    held = [share_file.read_bytes() for share_file in sorted(directory.glob("f*"))]
    assert run.rc == 0, run
    shares = [line.strip() for text in held for line in text.decode().splitlines()
              if line.strip() and not line.startswith("#")]
    assert len(shares) == 3
    match = re.search(r"^Initial Root Token: (\S+)$", run.out, re.MULTILINE)
    assert match is not None
    world.root_tokens.add(match[1])
    world.register_shares(bytes.fromhex(Share.parse(text).hex()) for text in shares)
