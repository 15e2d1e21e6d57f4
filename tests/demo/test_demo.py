"""`make demo` tells the seed's whole story and ends well: the main job is tested like the rest.

The demo waits on each fact it narrates (and exits non-zero if one does not come true in
time); this test runs it as a person does and checks the narration's facts and figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_tells_the_seeds_story() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        # kubectl applied the overlay and the seed example, named as the seed names them
        "vaultstaticsecret.secrets.vault-syncd.dev/info created",
        "vaultauth.secrets.vault-syncd.dev/app created", "deployment.apps/app created",
        "unsealer init: 5 shares, threshold 3", "as ServiceAccount vault/vault-unsealer",
        "all 3 pods unsealed", "over https: only pods of StatefulSet",
        "auth kubernetes role kubernetes-role", "as ServiceAccount vault-syncd/vault-syncd",
        "Secret default/info appeared", "keys ['SECRET_KEY', '_raw']", "version 1",
        "not restarted by the first sync (restartedAt None)",
        "Secret info has SECRET_KEY's new value",
        "recovered them hands-off", "sealed [False, False, False]",
        "syncd stopped on SIGTERM", "unsealer stopped on SIGTERM", "demo done",
    ):
        assert step in out, (step, out)
    assert "exit code 0" in out and "exit code 1" not in out, out
    restarts = re.search(r"Deployment app restarted (\d+) time\(s\) in all", out)
    assert restarts is not None and restarts.group(1) == "1", out
    # /metrics of both services, parsed: one rotation synced, one restart, every attempt good.
    assert re.search(r"syncd_syncs_total: .*1 \(outcome=SecretRotated\)", out), out
    assert "syncd_rollout_restarts_total: 1 (kind=Deployment)" in out, out
    # (a pod still restarting after the power cut may count an attempt VaultUnreachable)
    unsealed = re.search(r"unsealer_attempts_total: .*?(\d+) \(result=Unsealed\)", out)
    assert unsealed is not None and int(unsealed.group(1)) >= 6, out  # 3 pods, twice
    assert "unsealer_sealed_pods: 0" in out, out
    # Traces: at least one tree per sync (2: first sync, rotation) and per unseal.
    syncs = re.search(r"syncd: reconcile: (\d+) traces", out)
    unseals = re.search(r"unsealer: unseal: (\d+) traces", out)
    assert syncs is not None and int(syncs.group(1)) >= 2, out
    assert unseals is not None and int(unseals.group(1)) >= 6, out  # 3 pods, twice
    assert re.search(r"\d+ secret values .*: 0 found", out), out  # none in logs, spans, Events
