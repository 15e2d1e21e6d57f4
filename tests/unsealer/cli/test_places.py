"""Custody by place through the real CLI: ``run``, ``init`` and ``custody verify`` refuse the
same unsafe custody alike, with exit code 2 and one line naming it, before any log line."""

from __future__ import annotations

import socket
from typing import Any

import pytest

NODE = f"node/{socket.gethostname()}"

#: Custodians of ``World.custody_config`` moved together, and the place that then holds 4 of 5.
CASES: dict[str, tuple[dict[str, dict[str, Any]], list[dict[str, Any]], str]] = {
    # kube-b in kube-a's Secret, under another key prefix.
    "one Secret": ({"kube-b": {"namespace": "vault-custody", "secretName": "unseal-a",
                               "keyPrefix": "b-"}}, [],
                   "place namespace/vault-custody (kube-a, kube-b)"),
    "one namespace": ({"kube-b": {"namespace": "vault-custody"}}, [],
                      "place namespace/vault-custody (kube-a, kube-b)"),
    # A second share file on this node, beside disk.
    "one node": ({"kube-b": {"shares": 1}}, [
        {"name": "disk-2", "kind": "file", "path": "{directory}/custody/disk-2", "shares": 2}],
        f"place {NODE} (disk, disk-2)"),
    # Two namespaces one team administers, declared one place.
    "one declared place": ({"kube-a": {"place": "team-ops"}, "kube-b": {"place": "team-ops"}},
                           [], "place team-ops (kube-a, kube-b)"),
}


def _config(world: Any, case: str) -> Any:
    extra, more, _ = CASES[case]
    world.place({"disk": []})  # the share files exist (empty), as verify requires
    spare = world.directory / "custody" / "disk-2"
    spare.touch(mode=0o600)
    return world.custody_config(extra=extra, more=[
        {key: value.format(directory=world.directory) if isinstance(value, str) else value
         for key, value in custodian.items()} for custodian in more])


def _command(world: Any, command: str, config: Any) -> list[str]:
    if command == "run":  # the CLI world's Vault speaks plain http
        return ["run", "--custody-config", str(config), *world.pod_args(), "--allow-plain-http"]
    if command == "init":
        return ["init", "--custody-config", str(config), *world.pod_args(),
                "--root-token-file", str(world.directory / "root-token")]
    return ["custody", "verify", "--custody-config", str(config), *world.pod_args()]


COMMANDS = {"run": "run", "init": "init", "verify": "custody verify"}


@pytest.mark.parametrize("case", list(CASES))
async def test_two_custodians_in_one_place_are_refused_by_every_command(
    world: Any, case: str
) -> None:
    config = _config(world, case)
    for command, name in COMMANDS.items():
        run = await world.cli(*_command(world, command, config))
        assert run.rc == 2, run
        assert run.err_lines == [  # one line, the first and only thing said
            f"unsealer {name}: error: split custody does not hold: {CASES[case][2]} alone "
            "yields 4 shares, and the threshold is 3"], run
        assert run.out == ""
    assert (await world.seal_status())["initialized"] is False  # init asked Vault nothing
    assert not (world.directory / "root-token").exists()


async def test_the_root_token_beside_shares_is_refused_by_every_command(world: Any) -> None:
    world.place({"disk": []})
    config = world.custody_config(extra={"kube-a": {"rootTokenKey": "root-token"}})
    for command, name in COMMANDS.items():
        argv = _command(world, command, config)
        if command == "init":
            argv = [*argv[:-2], "--root-token-custodian", "kube-a"]
        run = await world.cli(*argv)
        assert run.rc == 2, run
        assert run.err_lines == [
            f"unsealer {name}: error: custody config {config}: custodian 'kube-a': field "
            "'rootTokenKey': the root token must be kept in a place that holds no shares, but "
            "namespace/vault-custody holds shares of kube-a (2); keep it at a custodian of its "
            "own elsewhere (shares: 0)"], run
    assert (await world.seal_status())["initialized"] is False


async def test_an_unknown_count_counts_as_everything_until_read(world: Any) -> None:
    """kube-b states no count and cannot be read: run refuses rather than guess; once it can
    be read, run starts (its shares are counted by fingerprint)."""
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": [keys[4], keys[0]]})
    config = world.custody_config(extra={"kube-b": {"shares": None}})
    world.kube.faults.error(503, verbs=["get"], resource="secrets", name="unseal-b")

    for command, name in (("run", "run"), ("verify", "custody verify")):
        # At run's default level, info: reading custodians logs at debug only.
        run = await world.cli(*_command(world, command, config),
                              env={"UNSEALER_LOG_LEVEL": "info"} if command == "run" else None)
        assert run.rc == 2, run
        assert run.err_lines[-1] == (
            f"unsealer {name}: error: "
            + ("" if command == "run" else "2 problem(s): custodian 'kube-b' is unreachable: "
               "custodian 'kube-b': cannot read Secret vault-custody-b/unseal-b: 503 "
               "ServiceUnavailable; ")
            + "split custody does not hold: place namespace/vault-custody-b (kube-b) may yield "
            "any number of shares: 'kube-b' could not be read and has no 'shares' count in the "
            "custody config, so it counts as holding all of them (the threshold is 3)"), run
        if command == "run":
            assert len(run.err_lines) == 1, run

    world.kube.faults.clear()
    verify = await world.cli(*_command(world, "verify", config))
    assert verify.rc == 0, verify


async def test_bad_configuration_is_one_line_and_exit_2_for_every_command(world: Any) -> None:
    world.place({"disk": []})
    config = world.custody_config(extra={"kube-b": {"namespace": "vault"}})
    for command, name in COMMANDS.items():
        run = await world.cli(*_command(world, command, config))
        assert run.rc == 2, run
        assert run.err_lines == [
            f"unsealer {name}: error: custody config {config}: custodian 'kube-b': field "
            "'namespace': must not be Vault's namespace 'vault': whoever can read Secrets "
            "there would hold Vault's data and its shares together"], run
