"""``unsealer custody import``: `vault operator init` output on stdin, shares to custodians."""

from __future__ import annotations

import base64
import json
import stat
from typing import Any

PROMPT = "Paste the output of `vault operator init`"


async def _real_init(world: Any, shares: int = 5, threshold: int = 3) -> tuple[list[str], str]:
    """A real sys/init of the Vault emulation, as `vault operator init` makes it."""
    status, body = await world.vault_call(
        "PUT", "sys/init", body={"secret_shares": shares, "secret_threshold": threshold})
    assert status == 200, body
    keys = [base64.b64decode(key) for key in body["keys_base64"]]
    world.register_shares(keys)
    world.root_tokens.add(body["root_token"])
    return body["keys_base64"], body["root_token"]


def _placed(world: Any) -> dict[str, list[bytes]]:
    return world.held_everywhere()


async def _unseal_from_custodians(world: Any) -> None:
    held = _placed(world)
    distinct = list(dict.fromkeys(share for shares in held.values() for share in shares))
    for node in (0, 1):
        assert (await world.seal_status(node))["sealed"] is True
        answer = await world.unseal(distinct, node=node)
        assert answer["sealed"] is False


async def test_import_from_a_pipe_stores_every_share_and_the_root_token_file(
    world: Any, init_text: Any,
) -> None:
    keys_base64, root_token = await _real_init(world)
    token_file = world.directory / "root-token"

    run = await world.cli(
        "custody", "import", "--custody-config", str(world.custody_config()),
        "--kubeconfig", str(world.kubeconfig), "--root-token-file", str(token_file),
        stdin=init_text(keys_base64, root_token, 3).encode())

    assert run.rc == 0, run
    assert run.out.splitlines() == [
        f"Root token written to {token_file} (mode 0600)",
        "Stored 5 unseal key(s), threshold 3:",
        "  unseal key 1: kube-a, disk",
        "  unseal key 2: kube-a",
        "  unseal key 3: kube-b",
        "  unseal key 4: kube-b",
        "  unseal key 5: disk",
        "By custodian:",
        "  kube-a: unseal key(s) 1, 2",
        "  kube-b: unseal key(s) 3, 4",
        "  disk: unseal key(s) 5, 1",
    ]
    keys = [base64.b64decode(key) for key in keys_base64]
    assert _placed(world) == {"kube-a": [keys[0], keys[1]], "kube-b": [keys[2], keys[3]],
                              "disk": [keys[4], keys[0]]}
    assert token_file.read_text() == f"{root_token}\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    await _unseal_from_custodians(world)

    verify = await world.cli("custody", "verify", "--custody-config",
                             str(world.custody_config()), *world.pod_args())
    assert verify.rc == 0, verify


async def test_import_on_a_terminal_echoes_nothing_and_drops_the_root_token(
    world: Any, init_text: Any,
) -> None:
    keys_base64, root_token = await _real_init(world)

    run = await world.cli_on_terminal(
        "custody", "import", "--custody-config", str(world.custody_config()),
        "--kubeconfig", str(world.kubeconfig),
        typed=init_text(keys_base64, root_token, 3).encode(), prompt=PROMPT)

    assert run.rc == 0, run
    assert run.echo.strip() == ""  # the terminal showed nothing of what was pasted
    assert "note: the root token in the input was not kept" in run.err
    assert sum(len(shares) for shares in _placed(world).values()) == 6
    await _unseal_from_custodians(world)


async def test_print_root_token_shows_it_once(world: Any, init_text: Any) -> None:
    keys_base64, root_token = await _real_init(world)
    run = await world.cli(
        "custody", "import", "--custody-config", str(world.custody_config()),
        "--kubeconfig", str(world.kubeconfig), "--print-root-token",
        stdin=init_text(keys_base64, root_token, 3).encode())
    assert run.rc == 0, run
    assert run.out.count(root_token) == 1
    assert f"Initial Root Token: {root_token}" in run.out.splitlines()


async def test_bad_input_stores_nothing_and_quotes_nothing(world: Any, init_text: Any) -> None:
    keys_base64, root_token = await _real_init(world)
    broken = init_text(keys_base64, root_token, 3).replace(
        f"Unseal Key 2: {keys_base64[1]}", f"Unseal Key 2: {keys_base64[1][:-3]}")
    token_file = world.directory / "root-token"

    run = await world.cli(
        "custody", "import", "--custody-config", str(world.custody_config()),
        "--kubeconfig", str(world.kubeconfig), "--root-token-file", str(token_file),
        stdin=broken.encode())

    assert run.rc == 2, run
    assert run.error_line() == (
        "unsealer custody import: error: line 2: unseal key 2 is not an unseal share "
        "(PGP-encrypted keys must be decrypted first)")
    assert _placed(world) == {"kube-a": [], "kube-b": [], "disk": []}
    assert not token_file.exists()


async def test_a_threshold_contradicting_the_config_stores_nothing(
    world: Any, init_text: Any,
) -> None:
    keys_base64, root_token = await _real_init(world, shares=5, threshold=2)
    run = await world.cli(
        "custody", "import", "--custody-config", str(world.custody_config(threshold=3)),
        "--kubeconfig", str(world.kubeconfig),
        stdin=init_text(keys_base64, root_token, 2).encode())
    assert run.rc == 2, run
    assert "the key threshold differs: the input says 2" in run.error_line()
    assert _placed(world) == {"kube-a": [], "kube-b": [], "disk": []}


async def test_a_custodian_that_fails_sends_its_shares_to_the_fallback_file(
    world: Any, init_text: Any, share_lines: Any,
) -> None:
    keys_base64, root_token = await _real_init(world)
    world.place({"kube-b": [b"\x01" * 33]})  # holds other shares: a conflict, not retried
    world.register_shares([b"\x01" * 33])

    run = await world.cli(
        "custody", "import", "--custody-config", str(world.custody_config()),
        "--kubeconfig", str(world.kubeconfig),
        stdin=init_text(keys_base64, root_token, 3).encode())

    assert run.rc == 1, run
    line = run.error_line()
    assert "custodians kube-b could not store their shares" in line
    fallbacks = list(world.workdir.glob("unsealer-undelivered-*.txt"))
    assert len(fallbacks) == 1 and str(fallbacks[0]) in line
    assert stat.S_IMODE(fallbacks[0].stat().st_mode) == 0o600
    keys = [base64.b64decode(key) for key in keys_base64]
    assert share_lines(fallbacks[0].read_text()) == [keys[2], keys[3]]
    assert world.held("kube-b") == [b"\x01" * 33]  # left alone


async def test_import_of_json_output_needs_a_threshold_from_somewhere(world: Any) -> None:
    """`vault operator init -format=json` carries the threshold; here the config supplies it."""
    keys_base64, root_token = await _real_init(world)
    document = json.dumps({"unseal_keys_b64": keys_base64, "root_token": root_token})
    no_threshold = world.custody_config(threshold=None, name="no-threshold.yaml")

    refused = await world.cli(
        "custody", "import", "--custody-config", str(no_threshold),
        "--kubeconfig", str(world.kubeconfig), stdin=document.encode())
    assert refused.rc == 2
    assert refused.error_line() == (
        "unsealer custody import: error: the input does not state the key threshold: pass "
        "--threshold")

    run = await world.cli(
        "custody", "import", "--custody-config", str(no_threshold),
        "--kubeconfig", str(world.kubeconfig), "--threshold", "3", stdin=document.encode())
    assert run.rc == 0, run
    assert "Stored 5 unseal key(s), threshold 3:" in run.out
    await _unseal_from_custodians(world)
