"""``unsealer init`` under SIGTERM, SIGHUP (a dropped SSH session) and SIGINT (Ctrl-C) at every
step, with slow custodians and a slow Vault: every share ends at a custodian or in the rescue
file, read back and combined to the key that unseals Vault; the root token is never lost
either. (A SIGINT is what a terminal's Ctrl-C sends: Python's default would raise
KeyboardInterrupt wherever the process is, so it is deferred like the others.)"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

import pytest

from unsealer.init_output import parse_init_output

TOKEN = {"name": "token", "kind": "kubernetesSecret", "namespace": "vault-root",
         "secretName": "root-token", "rootTokenKey": "root-token", "shares": 0}
SLOW = 3.0  # seconds each slowed request takes: the signal lands inside it


def _slow_sys_init(world: Any) -> Callable[[], bool]:
    world.vault.admin.add_fault(method="PUT", path="/v1/sys/init", latency=SLOW, node=0)
    return lambda: world.vault.admin.request_count(method="PUT", path="/v1/sys/init") > 0


def _slow_secret_writes(namespace: str) -> Callable[[Any], Callable[[], bool]]:
    """Slow Secret writes in ``namespace``; the condition: one of them has arrived."""
    writes = ("create", "patch", "update")

    def slow(world: Any) -> Callable[[], bool]:
        world.kube.faults.latency(SLOW, verbs=list(writes), resource="secrets",
                                  namespace=namespace)
        return lambda: any(r.resource == "secrets" and r.namespace == namespace
                           and r.verb in writes for r in world.kube.requests.log)

    return slow


#: kube-b's Secret: shares; vault-root: the root token's custodian.
_slow_share_custodian = _slow_secret_writes("vault-custody-b")
_slow_token_custodian = _slow_secret_writes("vault-root")


STEPS = {"sys/init": _slow_sys_init, "shares": _slow_share_custodian,
         "root token": _slow_token_custodian}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["TERM", "HUP", "INT"])
@pytest.mark.parametrize("step", list(STEPS))
async def test_a_signal_at_any_step_of_init_loses_no_share(
    world: Any, step: str, signum: signal.Signals,
) -> None:
    reached = STEPS[step](world)
    config = world.custody_config(more=[TOKEN])
    args = ("init", "--custody-config", str(config), *world.pod_args(),
            "--root-token-custodian", "token")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "unsealer", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=world.environment(), cwd=world.workdir)
    try:
        await world.kube.wait_for(reached, timeout=30, message=f"init never reached {step}")
        process.send_signal(signum)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    code = process.returncode or 0

    # Everything the custodians and the rescue files hold, read back behind the CLI's back.
    rescued: list[bytes] = []
    for path in world.workdir.glob("unsealer-init-rescue-*.txt"):
        with parse_init_output(path.read_text()) as parsed:
            rescued += [bytes.fromhex(share.hex()) for share in parsed.shares]
    held = [share for shares in world.held_everywhere().values() for share in shares]
    world.register_shares(held + rescued)
    token = world.held_root_token("token")
    for path in world.workdir.glob("unsealer-root-token-*.txt"):
        token = path.read_text().strip().splitlines()[-1]
    assert token is not None, "the root token was lost"
    world.root_tokens.add(token)
    run = world.record(args, code, out=out.decode(), err=err.decode())

    distinct = list(dict.fromkeys(held + rescued))
    assert len(distinct) == 5, f"{5 - len(distinct)} share(s) lost\n{run}"
    # The proof: what was kept unseals Vault (every 3 of them would).
    assert (await world.unseal(distinct[:3], node=0))["sealed"] is False
    status, body = await world.vault_call("GET", "auth/token/lookup-self", token=token)
    assert status == 200 and body["data"]["policies"] == ["root"]

    assert code == 1, run
    line = run.error_line()
    if step == "root token":  # every share was stored: the signal waited for the token too
        assert not rescued
        assert line == (f"unsealer init: error: {signum.name} received during init and "
                        "deferred until every share and the root token were stored")
    else:
        [rescue] = world.workdir.glob("unsealer-init-rescue-*.txt")
        assert re.fullmatch(
            rf"unsealer init: error: {signum.name} while the shares were being stored; all 5 "
            rf"shares were written to {re.escape(str(rescue))} \(mode 0600\): .*", line), line
        # As the error says: import stores them, beside what the custodians already took.
        world.kube.faults.clear()
        world.vault.admin.clear_faults()
        imported = await world.cli("custody", "import", "--custody-config", str(config),
                                   "--kubeconfig", str(world.kubeconfig),
                                   stdin=rescue.read_bytes())
        assert imported.rc == 0, imported
        assert {name: len(shares) for name, shares in world.held_everywhere().items()} == {
            "kube-a": 2, "kube-b": 2, "disk": 2}
