"""``make demo``: the seed's story, with both services as real processes, against the testbed.

People arrive from a three-node Raspberry Pi cluster running Vault by the official Helm chart:
initialised 5/3, KV v2 at ``kv-secret`` with secret ``info`` holding ``SECRET_KEY``, policy
``allow-secret-access``, Kubernetes auth role ``kubernetes-role`` for ServiceAccount ``app`` of
``default``. The demo builds exactly that and tells what happens, with timings:

0. ``kubectl apply``: the ``raspberry-pi`` overlay (CRDs first), then
   ``manifests/examples/seed`` (pointed at the emulation's address).
1. A 3-node Vault (vault-0..2, a StatefulSet, TLS, a certificate per pod) comes up
   uninitialised; ``unsealer init`` initialises it 5/3 into three custodians, none holding 3.
2. ``unsealer run`` (as ServiceAccount ``vault/vault-unsealer``) unseals every pod.
3. Vault is configured as the seed's, its Kubernetes auth pointed at the Kubernetes emulation
   with a reviewer JWT of ServiceAccount ``vault/vault`` (``system:auth-delegator``).
4. ``syncd run`` (as ``vault-syncd/vault-syncd``): Secret ``info`` appears.
5. ``SECRET_KEY`` is rotated to version 2: the Secret follows, Deployment ``app`` restarts once.
6. Power cut: every Vault pod comes back sealed; the unsealer recovers them.
7. What the services recorded: their ``/metrics``, and (after they stop, when the console
   span exporter has written everything) one trace tree per sync and per unseal, the largest
   of each drawn span by span.
8. SIGTERM; both logs and every Event are searched for every secret value.

``--keep`` stops after 7 and leaves everything running for a person (kubectl, hvac) until
Ctrl-C. The testbed (Kubernetes API and Vault emulations) runs in this process; the services
are subprocesses speaking HTTP to it, as they would to a cluster. Their logs (JSON lines and
spans) are in ``.demo/``. No secret value is printed: only key names, versions, fingerprints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testbed.kube import Kube, running_kube
from testbed.statefulset import vault_pods
from testbed.vault import RunningVault, running_vault

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"
OVERLAY = ROOT / "manifests" / "overlays" / "raspberry-pi"
SEED = ROOT / "manifests" / "examples" / "seed"
RESTARTED_AT = "secrets.vault-syncd.dev/restartedAt"
STARTED = time.monotonic()
#: What the Helm chart creates for Vault's Kubernetes auth: its ServiceAccount may review tokens.
REVIEWER = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault, namespace: vault}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vault-server-binding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: vault, namespace: vault}]
"""


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
    """A service subprocess: JSON log lines and console spans go to .demo/<name>.log; its
    health port serves /metrics."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, health: int) -> None:
        self.name = name
        self.process = process
        self.health = health

    @classmethod
    async def start(cls, name: str, *args: str) -> Service:
        log = (WORK / f"{name}.log").open("ab")
        health = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", name, *args, "--health-address", f"127.0.0.1:{health}",
            stdout=log, stderr=log, start_new_session=True,  # Ctrl-C is the demo's to handle
            env={**os.environ, "OTEL_TRACES_EXPORTER": "console"},
        )
        return cls(name, process, health)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.health}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())

    async def kill(self) -> None:
        """If the demo failed half-way: the process is not left behind (it has its own
        session, so nothing else would end it)."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> int:
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 15)
        say(f"{self.name} stopped on SIGTERM in {time.monotonic() - began:.2f}s, exit code {code}")
        return code


async def run(*args: str, stdin: str | None = None) -> str:
    """A command's stdout; its stderr in the error if it fails."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
    )
    out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    if process.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args[:3])} failed:\n{err.decode()}")
    return out.decode()


def seed_for_the_testbed(vault: RunningVault) -> Path:
    """A kustomization over manifests/examples/seed with what differs here: Vault's address
    (the emulation's, not ``vault.vault.svc``) and a 2 s refresh instead of 30 s."""
    directory = WORK / "seed"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(SEED, directory)],
        "patches": [
            {"target": {"kind": "VaultConnection", "name": "default"}, "patch": json.dumps(
                [{"op": "replace", "path": "/spec/address", "value": vault.addresses[0]}])},
            {"target": {"kind": "VaultStaticSecret", "name": "info"}, "patch": json.dumps(
                [{"op": "replace", "path": "/spec/refreshAfter", "value": "2s"}])},
        ],
    }))
    return directory


async def kubectl_apply(kubeconfig: Path, directory: Path) -> list[str]:
    """``kubectl kustomize`` then apply: CRDs first, until Established, then the rest."""
    kubectl = ("kubectl", "--kubeconfig", str(kubeconfig))
    documents = [d for d in yaml.safe_load_all(await run("kubectl", "kustomize", str(directory)))
                 if d]
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in documents if d["kind"] != "CustomResourceDefinition"]
    out = ""
    if crds:
        out += await run(*kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
        await run(*kubectl, "wait", "--for=condition=Established", "crd", "--all",
                  "--timeout=30s")
    out += await run(*kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(rest))
    return out.strip().splitlines()


def custody_config() -> Path:
    """The demo's custody: the seed's three places, with a second file (a removable disk)
    standing in for the peer unsealer on another Pi."""
    shares_a, shares_b = WORK / "custody-disk-a", WORK / "custody-disk-b"
    config = {
        "threshold": 3, "shares": 5,
        "custodians": [
            {"name": "kube-secret", "kind": "kubernetesSecret", "namespace": "vault-custody",
             "secretName": "unseal-shares", "shares": 2},
            {"name": "node-disk", "kind": "file", "path": str(shares_a), "shares": 2},
            # Two files on one node are one place: this one stands for a removable disk.
            {"name": "usb-key", "kind": "file", "path": str(shares_b), "shares": 1,
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


def spans(log: Path) -> Iterator[dict[str, Any]]:
    """The spans the console exporter wrote among the JSON log lines of ``log``."""
    text, decoder, at = log.read_text(), json.JSONDecoder(), 0
    while True:
        start = text.find("{", at)
        if start < 0:
            return
        try:
            value, at = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            at = text.find("\n", start) + 1 or len(text)
            continue
        if isinstance(value, dict) and "trace_id" in (value.get("context") or {}):
            yield value


def trace_summary(log: Path) -> list[str]:
    """One line per kind of trace: its root span's name, how many, spans per trace, the
    slowest; traces are trees (every span's parent is in its trace)."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans(log):
        traces.setdefault(span["context"]["trace_id"], []).append(span)
    kinds: dict[str, list[tuple[int, float]]] = {}
    for members in traces.values():
        ids = {s["context"]["span_id"] for s in members}
        roots = [s for s in members if s.get("parent_id") not in ids]
        if len(roots) != 1:
            continue  # a trace whose root is not (yet) exported
        root = roots[0]
        took = _seconds(root["end_time"]) - _seconds(root["start_time"])
        kinds.setdefault(root["name"], []).append((len(members), took))
    return [f"{name}: {len(seen)} traces, {min(n for n, _ in seen)}-{max(n for n, _ in seen)}"
            f" spans each, slowest {max(t for _, t in seen) * 1000:.0f} ms"
            for name, seen in sorted(kinds.items())]


def largest_tree(log: Path) -> list[str]:
    """The trace of ``log`` with the most spans, drawn as a tree: name, duration, attributes
    (span attributes hold names, versions and outcomes, never a value)."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans(log):
        traces.setdefault(span["context"]["trace_id"], []).append(span)
    if not traces:
        return []
    members = max(traces.values(), key=len)
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["context"]["span_id"] for s in members}
    for span in sorted(members, key=lambda s: str(s["start_time"])):
        parent = span.get("parent_id")
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def draw(span: dict[str, Any], depth: int) -> None:
        took = (_seconds(span["end_time"]) - _seconds(span["start_time"])) * 1000
        attributes = " ".join(f"{k.split('.', 1)[-1]}={v}"
                              for k, v in (span.get("attributes") or {}).items())
        lines.append(f"{'  ' * depth}{span['name']} {took:.1f} ms  {attributes}")
        for child in children.get(span["context"]["span_id"], []):
            draw(child, depth + 1)

    for root in children.get(None, []):
        draw(root, 0)
    return lines


def _seconds(stamp: str) -> float:
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def metric_summary(text: str, prefix: str) -> list[str]:
    """Counters and gauges of ``prefix`` from a /metrics scrape, summed over labels but one."""
    lines = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix) or family.type not in ("counter", "gauge"):
            continue
        by: Counter[str] = Counter()
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            label = next((f"{k}={v}" for k, v in sorted(sample.labels.items())
                          if k in ("result", "outcome", "reason", "kind")), "")
            by[label] += sample.value
        lines.append(f"{family.name}{'' if family.type == 'gauge' else '_total'}: " + ", ".join(
            f"{value:g}" + (f" ({label})" if label else "") for label, value in sorted(by.items())))
    return lines


async def main(*, keep: bool) -> None:
    if shutil.which("kubectl") is None:
        raise SystemExit("demo: kubectl not found: it applies the manifests, as you would")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    port = free_port()
    say("testbed: a Kubernetes API emulation and a 3-node Vault emulation on loopback")
    async with running_kube(pod_ready_delay=0.1) as kube, \
            running_vault(nodes=3, hosts=HOSTS, port=port, tls=True,
                          tls_dir=WORK / "vault-tls") as vault, \
            vault_pods(kube, vault) as pods, \
            contextlib.AsyncExitStack() as services:
        assert vault.ca_file is not None
        kubeconfig = kube.write_kubeconfig(WORK / "kubeconfig")

        say("0. kubectl apply -k manifests/overlays/raspberry-pi, then manifests/examples/seed")
        applied = await kubectl_apply(kubeconfig, OVERLAY)
        say(f"   the overlay: {len(applied)} objects (CRDs, namespaces, ServiceAccounts, RBAC,"
            " Deployments, NetworkPolicies)")
        await run("kubectl", "--kubeconfig", str(kubeconfig), "create", "secret", "generic",
                  "vault-ca", "-n", "vault-syncd", f"--from-file=ca.crt={vault.ca_file}")
        applied = await kubectl_apply(kubeconfig, seed_for_the_testbed(vault))
        for line in applied:
            print(f"            {line}")
        say("   (the seed as it is, but for Vault's address and refreshAfter: 2s; the services"
            " run with tokens of the ServiceAccounts the overlay created, not as admin)")
        # Tokens of the ServiceAccounts the overlay made (create=False: none is made here).
        unsealer_token = kube.admin.mint_token("vault", "vault-unsealer", create=False)
        syncd_token = kube.admin.mint_token("vault-syncd", "vault-syncd", create=False)
        unsealer_config = kube.write_kubeconfig(WORK / "kubeconfig-unsealer", token=unsealer_token)
        syncd_config = kube.write_kubeconfig(WORK / "kubeconfig-syncd", token=syncd_token)
        custody = custody_config()
        address = f"https://{{ip}}:{port}"
        common = ["--namespace", "vault", "--address-template", address,
                  "--ca-file", str(vault.ca_file), "--custody-config", str(custody)]

        say("1. Vault pods vault-0..2 are up, uninitialised and sealed: " + str(sealed(vault)))
        root_token_file = WORK / "root-token"
        out = await run(
            sys.executable, "-m", "unsealer", "init", "--kubeconfig", str(kubeconfig), *common,
            "--shares", "5", "--threshold", "3", "--root-token-file", str(root_token_file),
            "--fallback-dir", str(WORK),
        )
        say("   unsealer init: 5 shares, threshold 3, distributed to 3 custodians (the seed's"
            " three places; a second file stands in for the peer unsealer on another Pi):")
        for line in out.strip().splitlines():
            print(f"            {line}")

        say("2. unsealer run, as ServiceAccount vault/vault-unsealer")
        unsealer = await Service.start("unsealer", "run", "--kubeconfig", str(unsealer_config),
                                       *common, "--poll-interval", "2s")
        services.push_async_callback(unsealer.kill)
        took = await until(lambda: not any(sealed(vault)), "the first unseal")
        say(f"   all 3 pods unsealed {took:.1f}s after the unsealer started: {sealed(vault)}")
        ready = next(json.loads(line) for line in (WORK / "unsealer.log").read_text().splitlines()
                     if '"event": "ready"' in line)
        say(f"   over {ready['transport']}: only pods of StatefulSet {ready['statefulset']}, each"
            " server proving its pod's name (vault-N.vault-internal.vault.svc)")

        say("3. Vault as the seed's: KV v2 at kv-secret, kv-secret/info with SECRET_KEY, policy"
            " allow-secret-access, auth kubernetes role kubernetes-role (app in default, TTL"
            " 86400)")
        root_token = root_token_file.read_text().strip()
        client = hvac.Client(url=vault.addresses[0], token=root_token, verify=vault.verify)
        first, second = f"key-{secrets.token_hex(12)}", f"key-{secrets.token_hex(12)}"
        # The Helm chart's ServiceAccount vault/vault, bound to system:auth-delegator, is the
        # reviewer: Vault sends its JWT to the API server's TokenReview.
        await run("kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-",
                  stdin=REVIEWER)
        reviewer = (await run("kubectl", "--kubeconfig", str(kubeconfig), "create", "token",
                              "vault", "-n", "vault", "--duration=24h")).strip()
        steps: list[tuple[Callable[..., Any], dict[str, Any]]] = [
            (client.sys.enable_secrets_engine,
             {"backend_type": "kv", "path": "kv-secret", "options": {"version": "2"}}),
            (client.secrets.kv.v2.create_or_update_secret,
             {"mount_point": "kv-secret", "path": "info", "secret": {"SECRET_KEY": first}}),
            (client.sys.create_or_update_policy,
             {"name": "allow-secret-access",
              "policy": 'path "kv-secret/data/info" { capabilities = ["read"] }'}),
            (client.sys.enable_auth_method, {"method_type": "kubernetes"}),
            (client.auth.kubernetes.configure,
             {"kubernetes_host": kube.url, "token_reviewer_jwt": reviewer}),
            (client.auth.kubernetes.create_role,
             {"name": "kubernetes-role", "bound_service_account_names": ["app"],
              "bound_service_account_namespaces": ["default"],
              "policies": ["allow-secret-access"], "ttl": "86400", "audience": "vault"}),
        ]
        for step, arguments in steps:
            await asyncio.to_thread(step, **arguments)

        say("4. syncd run, as ServiceAccount vault-syncd/vault-syncd")
        syncd = await Service.start("syncd", "run", "--kubeconfig", str(syncd_config),
                                    "--rollout-debounce", "1s")
        services.push_async_callback(syncd.kill)

        def secret_value() -> str | None:
            secret = kube.admin.get("v1", "Secret", "info", "default")
            if not secret or "SECRET_KEY" not in (secret.get("data") or {}):
                return None
            return base64.b64decode(secret["data"]["SECRET_KEY"]).decode()

        def app() -> dict[str, Any]:
            return kube.admin.get("apps/v1", "Deployment", "app", "default") or {}

        def restarted_at() -> str | None:
            annotations = app()["spec"]["template"]["metadata"].get("annotations") or {}
            return annotations.get(RESTARTED_AT)

        took = await until(lambda: secret_value() == first, "the first sync")
        await until(lambda: "sourceVersion" in ((kube.admin.get(
            GROUP_VERSION, "VaultStaticSecret", "info", "default") or {}).get("status") or {}),
            "the first sync's status")
        status = (kube.admin.get(GROUP_VERSION, "VaultStaticSecret", "info", "default")
                  or {})["status"]
        secret = kube.admin.get("v1", "Secret", "info", "default") or {}
        say(f"   Secret default/info appeared {took:.1f}s after syncd started, keys"
            f" {sorted(secret['data'])} (_raw: the whole response, for envFrom), version"
            f" {status['sourceVersion']}, fingerprint {status['secretMAC'][:12]}...")
        generation = app()["metadata"]["generation"]
        say(f"   Deployment app not restarted by the first sync (restartedAt {restarted_at()})")

        say("5. SECRET_KEY rotated in Vault (version 2)")
        rotated = time.monotonic()
        await asyncio.to_thread(client.secrets.kv.v2.create_or_update_secret,
                                mount_point="kv-secret", path="info",
                                secret={"SECRET_KEY": second})
        await until(lambda: secret_value() == second, "the rotation")
        followed = time.monotonic() - rotated
        await until(lambda: restarted_at() is not None, "the rollout restart")
        say(f"   Secret info has SECRET_KEY's new value {followed:.1f}s later; Deployment app"
            f" restarted {time.monotonic() - rotated:.1f}s after the rotation")

        say("6. power cut: every Vault pod loses power and comes back sealed")
        pods.power_cut()
        say(f"   sealed: {sealed(vault)}")
        took = await until(lambda: not any(sealed(vault)), "recovery from the power cut")
        say(f"   the unsealer recovered them hands-off in {took:.1f}s: sealed {sealed(vault)}")
        events = [e for e in kube.admin.list("v1", "Event", "vault")
                  if e.get("reason") == "Unsealed"]
        say(f"   {len(events)} Unsealed events on the pods, e.g. {events[-1]['message']!r}")
        restarts = app()["metadata"]["generation"] - generation
        say(f"   Deployment app restarted {restarts} time(s) in all (one rotation)")

        say("7. what the services recorded: /metrics (scraped now)")
        for service, prefix in ((syncd, "syncd_"), (unsealer, "unsealer_")):
            text = await asyncio.to_thread(service.metrics)
            for line in metric_summary(text, prefix):
                print(f"            {line}")
        if keep:
            await keep_running(kubeconfig, vault)

        say("8. SIGTERM")
        codes = [await syncd.stop(), await unsealer.stop()]
        if any(codes):
            raise SystemExit("demo: a service did not stop cleanly")
        say("   traces (console exporter, one tree per sync and per unseal):")
        for name in ("syncd", "unsealer"):
            for line in trace_summary(WORK / f"{name}.log"):
                print(f"            {name}: {line}")
        for name in ("syncd", "unsealer"):
            say(f"   {name}'s largest trace:")
            for line in largest_tree(WORK / f"{name}.log"):
                print(f"              {line}")

        secret_material = [first, second, root_token, reviewer, unsealer_token, syncd_token,
                           *shares_held(kube)]
        logged = "".join((WORK / f"{name}.log").read_text() for name in ("syncd", "unsealer"))
        logged += repr(kube.admin.list("v1", "Event", None))
        leaked = sum(1 for value in secret_material if value in logged)
        say(f"   {len(secret_material)} secret values (KV data, tokens, unseal shares) searched"
            f" for in both services' logs and spans and every Event: {leaked} found")
        if leaked:
            raise SystemExit("demo: secret material reached a log line or an Event")
    say(f"demo done. Logs: {WORK}/syncd.log, {WORK}/unsealer.log")


async def keep_running(kubeconfig: Path, vault: RunningVault) -> None:
    """Everything stays up until Ctrl-C (or SIGTERM), for a person to look around."""
    print(f"""
    Running. In another shell:
      export KUBECONFIG={kubeconfig}
      kubectl get vaultstaticsecret,secret info -n default
      kubectl get events -A
      export VAULT_ADDR={vault.addresses[0]} VAULT_CACERT={vault.ca_file}
      export VAULT_TOKEN=$(cat {WORK / 'root-token'})   # the root token: a demo only
      {sys.executable} -c 'import hvac; print(hvac.Client(url="{vault.addresses[0]}",
          token=open("{WORK / "root-token"}").read().strip(), verify="{vault.ca_file}")
          .secrets.kv.v2.read_secret_version(mount_point="kv-secret", path="info",
          raise_on_deleted_version=True)
          ["data"]["metadata"])'
    Logs: {WORK}/syncd.log, {WORK}/unsealer.log. Ctrl-C to stop.
""", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave it running (kubeconfig, VAULT_ADDR printed) until Ctrl-C")
    asyncio.run(main(keep=parser.parse_args().keep))
