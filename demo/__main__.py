"""``make demo``: both services, as real processes, against the testbed.

The story a Raspberry Pi cluster lives through, told step by step:

1. A 3-node Vault (vault-0..2, a StatefulSet) comes up uninitialised, TLS on, each pod with a
   certificate for its own name; ``unsealer init`` initialises it and hands the 5 unseal
   shares to three custodians, none holding 3.
2. ``unsealer run`` sees three sealed pods and unseals them, from split custody, each over
   https to a server that proved the pod's name (``vault-0.vault-internal.vault.svc``).
3. ``syncd run`` mirrors a kv-v2 secret into a Kubernetes Secret used by a Deployment.
4. The secret is rotated in Vault: the Secret follows, the Deployment restarts once.
5. Power cut: every Vault pod restarts sealed; the unsealer recovers them hands-off.
6. SIGTERM: both services stop cleanly.

The testbed (Kubernetes API and Vault emulations) runs in this process; the services are
subprocesses speaking HTTP to it, exactly as they would to a cluster. Their logs are in
``.demo/``. No secret value is printed: only key names, versions and fingerprints.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import yaml

from testbed.kube import Kube, running_kube
from testbed.statefulset import vault_pods
from testbed.vault import RunningVault, running_vault

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until(predicate: Callable[[], Any], what: str, deadline: float = 30.0) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


class Service:
    """A service subprocess; its stderr (JSON logs) goes to .demo/<name>.log."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process

    @classmethod
    async def start(cls, name: str, *args: str) -> Service:
        log = (WORK / f"{name}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", name, *args, stdout=log, stderr=log,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )
        return cls(name, process)

    async def stop(self) -> int:
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 15)
        say(f"{self.name} stopped on SIGTERM in {time.monotonic() - began:.2f}s, exit code {code}")
        return code


async def run_command(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args[:2])} failed:\n{err.decode()}")
    return out.decode()


def prepare_cluster(kube: Kube, vault: RunningVault) -> None:
    """Namespaces, CRDs, RBAC, and Vault's CA where syncd's VaultConnection names it.

    (Vault's namespace, StatefulSet and pods are made by :func:`testbed.statefulset.vault_pods`.)
    """
    for namespace in ("vault-custody", "vault-syncd", "app"):
        kube.admin.create_namespace(namespace)
    assert vault.ca_file is not None
    kube.admin.apply({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "vault-ca", "namespace": "vault-syncd"},
                      "stringData": {"ca.crt": vault.ca_file.read_text()}})
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        kube.admin.apply_yaml(path.read_text())
    for manifest in ("syncd/rbac.yaml", "unsealer/rbac.yaml", "unsealer/custody-rbac.yaml"):
        kube.admin.apply_yaml((ROOT / "manifests" / manifest).read_text())


def custody_config(port: int) -> Path:
    shares_a, shares_b = WORK / "custody-disk-a", WORK / "custody-disk-b"
    config = {
        "threshold": 3, "shares": 5,
        "custodians": [
            {"name": "kube-secret", "kind": "kubernetesSecret", "namespace": "vault-custody",
             "secretName": "unseal-shares", "shares": 2},
            {"name": "disk-a", "kind": "file", "path": str(shares_a), "shares": 2},
            # Two files on one node are one place: this one stands for a removable disk.
            {"name": "disk-b", "kind": "file", "path": str(shares_b), "shares": 1,
             "place": "usb-key"},
        ],
    }
    path = WORK / "custody.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def shares_held(kube: Kube) -> list[str]:
    """The unseal shares as the custodians hold them (to prove none was logged)."""
    secret = kube.admin.get("v1", "Secret", "unseal-shares", "vault-custody") or {}
    held = [base64.b64decode(v).decode().strip() for v in (secret.get("data") or {}).values()]
    for name in ("custody-disk-a", "custody-disk-b"):
        held += [line.strip() for line in (WORK / name).read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
    return held


def sealed(vault: RunningVault) -> list[bool]:
    return [bool(node.sealed) for node in vault.admin.nodes]


async def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    port = free_port()
    say("testbed: a Kubernetes API emulation and a 3-node Vault emulation on loopback")
    async with running_kube(pod_ready_delay=0.1) as kube, \
            running_vault(nodes=3, hosts=HOSTS, port=port, tls=True,
                          tls_dir=WORK / "vault-tls") as vault, \
            vault_pods(kube, vault) as pods:
        prepare_cluster(kube, vault)
        admin_config = kube.write_kubeconfig(WORK / "kubeconfig-admin")
        unsealer_config = kube.write_kubeconfig(
            WORK / "kubeconfig-unsealer", token=kube.admin.mint_token("vault", "vault-unsealer"))
        syncd_config = kube.write_kubeconfig(
            WORK / "kubeconfig-syncd", token=kube.admin.mint_token("vault-syncd", "vault-syncd"))
        custody = custody_config(port)
        address = f"https://{{ip}}:{port}"
        common = ["--namespace", "vault", "--address-template", address,
                  "--ca-file", str(vault.ca_file), "--custody-config", str(custody)]

        say("1. Vault pods vault-0..2 are up, uninitialised and sealed: " + str(sealed(vault)))
        root_token_file = WORK / "root-token"
        out = await run_command(
            "unsealer", "init", "--kubeconfig", str(admin_config), *common,
            "--shares", "5", "--threshold", "3", "--root-token-file", str(root_token_file),
            "--fallback-dir", str(WORK),
        )
        say("   unsealer init: 5 shares, threshold 3, distributed to 3 custodians:")
        for line in out.strip().splitlines():
            print(f"            {line}")

        say("2. unsealer run")
        unsealer = await Service.start(
            "unsealer", "run", "--kubeconfig", str(unsealer_config), *common,
            "--poll-interval", "2s", "--health-address", "127.0.0.1:0",
        )
        took = await until(lambda: not any(sealed(vault)), "the first unseal")
        say(f"   all 3 pods unsealed {took:.1f}s after the unsealer started: {sealed(vault)}")
        ready = next(json.loads(line) for line in (WORK / "unsealer.log").read_text().splitlines()
                     if '"event": "ready"' in line)
        say(f"   over {ready['transport']}: only pods of StatefulSet {ready['statefulset']}, each"
            " server proving its pod's name (vault-N.vault-internal.vault.svc)")

        root_token = root_token_file.read_text().strip()
        client = hvac.Client(url=vault.addresses[0], token=root_token, verify=vault.verify)
        await asyncio.to_thread(client.sys.enable_secrets_engine, "kv", path="secret",
                                options={"version": "2"})
        await asyncio.to_thread(client.sys.create_or_update_policy, name="syncd",
                                policy='path "secret/data/*" { capabilities = ["read"] }')
        syncd_token = (await asyncio.to_thread(client.auth.token.create, policies=["syncd"],
                                               ttl="768h"))["auth"]["client_token"]
        first, second = f"api-key-{secrets.token_hex(8)}", f"api-key-{secrets.token_hex(8)}"
        await asyncio.to_thread(client.secrets.kv.v2.create_or_update_secret,
                                path="webapp/config", secret={"API_KEY": first})

        say("3. syncd run: a VaultStaticSecret mirrors secret/webapp/config into Secret app/web")
        kube.admin.apply({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "vault-token", "namespace": "app"},
                          "type": "secrets.vault-syncd.dev/vault-token",
                          "stringData": {"token": syncd_token}})
        kube.admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultConnection",
                          "metadata": {"name": "default", "namespace": "vault-syncd"},
                          "spec": {"address": vault.addresses[0],
                                   "caCertSecretRef": "vault-ca"}})
        kube.admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                          "metadata": {"name": "default", "namespace": "vault-syncd"},
                          "spec": {"method": "token", "token": {"secretRef": {
                              "name": "vault-token", "key": "token"}}}})
        kube.admin.apply({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "app"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "web", "image": "nginx:1.27",
                                         "envFrom": [{"secretRef": {"name": "web"}}]}]}}},
        })
        kube.admin.apply({
            "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
            "metadata": {"name": "web", "namespace": "app"},
            "spec": {"mount": "secret", "path": "webapp/config", "type": "kv-v2",
                     "refreshAfter": "2s", "destination": {"name": "web", "create": True},
                     "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]},
        })
        syncd = await Service.start("syncd", "run", "--kubeconfig", str(syncd_config),
                                    "--rollout-debounce", "1s",
                                    "--health-address", "127.0.0.1:0")

        def secret_value() -> str | None:
            secret = kube.admin.get("v1", "Secret", "web", "app")
            if not secret:
                return None
            return base64.b64decode(secret["data"]["API_KEY"]).decode()

        took = await until(lambda: secret_value() == first, "the first sync")
        status = (kube.admin.get(GROUP_VERSION, "VaultStaticSecret", "web", "app") or {})["status"]
        secret = kube.admin.get("v1", "Secret", "web", "app") or {}
        say(f"   Secret app/web created in {took:.1f}s with keys {sorted(secret['data'])},"
            f" version {status['sourceVersion']}, fingerprint {status['secretMAC'][:12]}...")

        def restarted_at() -> str | None:
            deployment = kube.admin.get("apps/v1", "Deployment", "web", "app") or {}
            annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
            return annotations.get("secrets.vault-syncd.dev/restartedAt")

        say("4. the secret is rotated in Vault (version 2)")
        assert restarted_at() is None
        await asyncio.to_thread(client.secrets.kv.v2.create_or_update_secret,
                                path="webapp/config", secret={"API_KEY": second})
        took = await until(lambda: secret_value() == second, "the rotation")
        await until(lambda: restarted_at() is not None, "the rollout restart")
        say(f"   Secret app/web updated {took:.1f}s later; Deployment app/web restarted once at"
            f" {restarted_at()}")

        say("5. power cut: every Vault pod restarts, sealed")
        pods.power_cut()
        say(f"   sealed: {sealed(vault)}")
        took = await until(lambda: not any(sealed(vault)), "recovery from the power cut")
        say(f"   recovered hands-off in {took:.1f}s: sealed {sealed(vault)}")
        events = [e for e in kube.admin.list("v1", "Event", "vault")
                  if e.get("reason") == "Unsealed"]
        say(f"   {len(events)} Unsealed events on the pods, e.g. {events[-1]['message']!r}")

        say("6. SIGTERM")
        codes = [await syncd.stop(), await unsealer.stop()]
        if any(codes):
            raise SystemExit("demo: a service did not stop cleanly")

        secret_material = [first, second, root_token, syncd_token, *shares_held(kube)]
        logged = "".join((WORK / f"{name}.log").read_text() for name in ("syncd", "unsealer"))
        logged += repr(kube.admin.list("v1", "Event", None))
        leaked = sum(1 for value in secret_material if value in logged)
        say(f"   {len(secret_material)} secret values (KV data, tokens, unseal shares) searched"
            f" for in both services' logs and every Event: {leaked} found")
        if leaked:
            raise SystemExit("demo: secret material reached a log line or an Event")
    say(f"demo done. Logs: {WORK}/syncd.log, {WORK}/unsealer.log")


if __name__ == "__main__":
    asyncio.run(main())
