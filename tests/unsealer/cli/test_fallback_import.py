"""``unsealer custody import --fallback-file``: what a failing custodian could not take at init
goes back to it once it works, without the other shares, idempotently."""

from __future__ import annotations

import base64
import os
import stat
from typing import Any


def _import_fallback(world: Any, config: Any, path: Any, *extra: str) -> list[str]:
    return ["custody", "import", "--custody-config", str(config),
            "--kubeconfig", str(world.kubeconfig), "--fallback-file", str(path), *extra]


async def test_init_fallback_file_round_trip_unseals_vault(world: Any, share_lines: Any) -> None:
    # kube-b's Secret exists, empty, and refuses every write: its shares go to the fallback.
    world.place({"kube-b": []})
    fault = world.kube.faults.error(500, verbs=["patch", "update"], resource="secrets",
                                    name="unseal-b")
    config = world.custody_config()
    token_file = world.directory / "root-token"

    init = await world.cli("init", "--custody-config", str(config), *world.pod_args(),
                           "--root-token-file", str(token_file))

    fallback = list(world.workdir.glob("unsealer-undelivered-*.txt"))
    assert len(fallback) == 1, init
    path = fallback[0]
    rescued = share_lines(path.read_text())
    world.register_shares([*rescued, *(s for shares in world.held_everywhere().values()
                                       for s in shares)])
    world.root_tokens.add(token_file.read_text().strip())
    assert init.rc == 1, init
    assert f"unsealer custody import --fallback-file {path}" in init.error_line()
    assert world.held("kube-b") == [] and len(rescued) == 2

    # Still broken: nothing is lost, the file is left as it was, exit 1.
    before = path.read_bytes()
    broken = await world.cli(*_import_fallback(world, config, path))
    assert broken.rc == 1, broken
    assert "  kube-b: unseal key(s) 3, 4: NOT STORED (custodian 'kube-b': cannot write " \
           "Secret vault-custody-b/unseal-b: 500" in broken.out
    assert broken.error_line().startswith(
        "unsealer custody import: error: custodians kube-b could not store their entries")
    assert f"Nothing was lost: {path} still holds them" in broken.error_line()
    assert path.read_bytes() == before and world.held("kube-b") == []

    # Fixed: kube-b takes exactly its shares; a second run finds them there and succeeds.
    world.kube.faults.remove(fault)
    for _ in range(2):
        run = await world.cli(*_import_fallback(world, config, path))
        assert run.rc == 0, run
        assert run.out.splitlines() == [
            f"From {path}:",
            "  kube-b: unseal key(s) 3, 4: stored",
            f"Every entry of {path} is at its custodian. Delete the file now (shred -u "
            f"{path}), then check with `unsealer custody verify`.",
        ]
    assert world.held("kube-b") == rescued
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # The proof: the custodians now hold every share, and they unseal Vault.
    held = world.held_everywhere()
    distinct = list(dict.fromkeys(share for shares in held.values() for share in shares))
    assert len(distinct) == 5
    assert all(len(shares) < 3 for shares in held.values())
    for node in (0, 1):
        assert (await world.unseal(distinct, node=node))["sealed"] is False
    verify = await world.cli("custody", "verify", "--custody-config", str(config),
                             *world.pod_args())
    assert verify.rc == 0, verify


async def test_a_custodian_holding_other_shares_is_left_alone_unless_replace(
    world: Any, share_lines: Any,
) -> None:
    shares = [os.urandom(32) + bytes([n]) for n in (3, 4)]
    other = os.urandom(32) + b"\x09"
    world.register_shares([*shares, other])
    path = world.workdir / "undelivered.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Unseal shares that could not be stored (vault-syncd unsealer).\n"
                     + "".join(f"# for kube-b (Secret vault-custody-b/unseal-b (keys share-1..)): "
                               f"unseal key {n}\n{base64.b64encode(s).decode()}\n"
                               for n, s in zip((3, 4), shares, strict=True)))
    world.place({"kube-b": [other]})
    config = world.custody_config()

    refused = await world.cli(*_import_fallback(world, config, path))
    assert refused.rc == 1, refused
    assert "refusing to overwrite" in refused.error_line()
    assert world.held("kube-b") == [other]

    replaced = await world.cli(*_import_fallback(world, config, path, "--replace"))
    assert replaced.rc == 0, replaced
    assert world.held("kube-b") == shares


async def test_unusable_fallback_files_are_refused_before_anything_is_stored(
    world: Any, init_text: Any,
) -> None:
    share = os.urandom(32) + b"\x01"
    world.register_shares([share])
    text = base64.b64encode(share).decode()
    config = world.custody_config()

    def write(name: str, content: str, mode: int = 0o600) -> Any:
        path = world.workdir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.chmod(path, mode)
        return path

    cases = {
        write("unknown.txt", f"# for nobody (x): unseal key 1\n{text}\n"):
            "names custodian 'nobody', which the custody config {config} does not have",
        write("bare.txt", f"{text}\n"):
            "line 1: a value without a '# for <custodian> (...): unseal key N' line above it: "
            "not a fallback file of the unsealer",
        write("bad.txt", "# for kube-a (x): unseal key 1\nnot-a-share\n"):
            "line 2: unseal key 1 is not an unseal share",
        write("token.txt", "# for kube-b (x): root token\nhvs.NotReally\n"):
            "custodian 'kube-b' has no 'rootTokenKey' in the custody config (add e.g. "
            "rootTokenKey: root-token), so it cannot hold the root token",
        write("unplaced.txt", f"# for no custodian (no plan): unseal key 1\n{text}\n"):
            "holds 1 share(s) that no custodian was planned for (no safe layout): fix the "
            "custody config, then import the original `vault operator init` output again",
    }
    world.root_tokens.add("hvs.NotReally")
    for path, message in cases.items():
        run = await world.cli(*_import_fallback(world, config, path))
        assert run.rc == 2, run
        assert message.format(config=config) in run.error_line(), run
        assert f"--fallback-file {path}" in run.error_line()

    loose = write("loose.txt", f"# for kube-a (x): unseal key 1\n{text}\n", mode=0o644)
    run = await world.cli(*_import_fallback(world, config, loose))
    assert run.rc == 2
    assert "is mode 0644; it must be 0600" in run.error_line()

    extra = await world.cli(*_import_fallback(world, config, loose, "--print-root-token"))
    assert extra.rc == 2
    assert extra.error_line() == (
        "unsealer custody import: error: --fallback-file names where each entry goes: "
        "--print-root-token cannot be used with it")
    assert world.held_everywhere() == {"kube-a": [], "kube-b": [], "disk": []}
