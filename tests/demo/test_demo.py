"""`make demo` tells the seed's whole story and ends well: the main job is tested like the rest.

The demo waits on each fact it narrates (and exits non-zero if one does not come true in
time); this test runs it as a person does and checks the narration's facts and figures."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The demo applies the manifests with kubectl, as a person would.
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not found")


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
    # The largest of each drawn as a tree: the rotation's (read, write, restart), an unseal's.
    rotation = re.search(r"^ +reconcile .*outcome=SecretRotated\n +vault\.read .*version=2\n"
                         r" +secret\.write .*\n +rollout\.restart .*outcome=Restarted$", out, re.M)
    assert rotation is not None, out
    assert re.search(r"^ +unseal .*outcome=Unsealed.*\n( +custody\.fetch .*\n){3}"
                     r"( +vault\.unseal\.submit .*\n){3}", out, re.M), out
    assert re.search(r"\d+ secret values .*: 0 found", out), out  # none in logs, spans, Events


def test_keep_leaves_it_running_for_kubectl_until_ctrl_c() -> None:
    """``make demo ARGS=--keep``: a person's kubectl sees the seed's Secret through the printed
    kubeconfig while it runs; Ctrl-C (SIGINT) then ends the story as usual."""
    demo = subprocess.Popen([sys.executable, "-m", "demo", "--keep"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        printed = []
        for line in demo.stdout:  # blocks on the demo's own progress, bounded by its waits
            printed.append(line)
            if "Ctrl-C to stop" in line:
                break
        out = "".join(printed)
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", out)
        vault_addr = re.search(r"export VAULT_ADDR=(https://\S+) VAULT_CACERT=(\S+)", out)
        assert kubeconfig is not None and vault_addr is not None, out
        assert Path(vault_addr.group(2)).is_file()
        got = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig.group(1), "get", "secret", "info", "-n",
             "default", "-o", "jsonpath={.data.SECRET_KEY}"],
            capture_output=True, text=True, timeout=30, check=False)
        assert got.returncode == 0 and got.stdout, got.stderr
        demo.send_signal(signal.SIGINT)
        rest, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, rest + err
    assert "syncd stopped on SIGTERM" in rest and "demo done" in rest, rest
    assert re.search(r"\d+ secret values .*: 0 found", rest), rest
