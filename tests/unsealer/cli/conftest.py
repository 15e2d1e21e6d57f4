"""The ``world`` of the CLI tests: both emulations, Vault pods that point at Vault, custodians.

The Vault emulation serves two nodes on distinct loopback addresses and one port, and the
Kubernetes emulation holds pods ``vault-0`` and ``vault-1`` whose ``status.podIP`` are those
addresses, so ``--address-template http://{ip}:<port>`` reaches each node as it would reach a
pod. The CLI runs as a real process (``python -m unsealer``) through asyncio subprocesses, so
the emulations keep serving in the test's loop while it runs, and exit codes, stdin, stdout and
stderr are the real ones.

Every run is recorded. When a test ends, the fixture checks that no share (hex, base64, in
either case, padded or not) and no root token registered during the test appears in any output
of any run; a run made with ``--print-root-token`` may show the token exactly once, on stdout.

Helpers are handed out as fixtures because the suite runs with ``--import-mode=importlib``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from testbed.kube import running_kube
from testbed.vault import running_vault

VAULT_NS = "vault"
CUSTODY_NS = "vault-custody"
#: kube-b's namespace: two Secret custodians in one namespace are one place (one compromise).
CUSTODY_NS_B = "vault-custody-b"
#: The root token's own place (a custodian ``token`` with ``shares: 0``, see custody_config).
ROOT_NS = "vault-root"
#: The Secret (namespace, name) of each Secret custodian of ``World.custody_config``.
SECRETS = {"kube-a": (CUSTODY_NS, "unseal-a"), "kube-b": (CUSTODY_NS_B, "unseal-b"),
           "token": (ROOT_NS, "root-token")}
#: A custodian of the root token only, in a place of its own (``custody_config(more=...)``).
TOKEN_CUSTODIAN = {"name": "token", "kind": "kubernetesSecret", "namespace": ROOT_NS,
                   "secretName": "root-token", "rootTokenKey": "root-token", "shares": 0}
HOSTS = ("127.0.0.2", "127.0.0.3")
#: A third pod's address where nothing listens: an unreachable Vault pod.
DEAD_HOST = "127.0.0.4"
LABELS = {"app.kubernetes.io/name": "vault", "component": "server"}


def free_port(hosts: Sequence[str]) -> int:
    """A port free on every one of ``hosts`` (the pods' common Vault port)."""
    for _ in range(100):
        probe = socket.socket()
        probe.bind((hosts[0], 0))
        port: int = probe.getsockname()[1]
        probe.close()
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def secret_forms(material: bytes) -> list[str]:
    hexed = material.hex()
    b64 = base64.b64encode(material).decode()
    return [hexed, hexed.upper(), b64, b64.rstrip("="),
            base64.urlsafe_b64encode(material).decode().rstrip("=")]


@dataclass
class Run:
    args: tuple[str, ...]
    rc: int
    out: str
    err: str
    #: A run made with --print-root-token: the token may appear once on stdout.
    shows_root_token: bool = False
    echo: str = ""

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def error_line(self) -> str:
        """The command's one failure line (``unsealer <command>: error: ...``)."""
        lines = [line for line in self.err_lines if ": error: " in line]
        assert len(lines) == 1, f"expected one error line:\n{self.err}"
        return lines[0]

    def __str__(self) -> str:
        return f"unsealer {' '.join(self.args)} -> {self.rc}\n--- stdout\n{self.out}\n" \
               f"--- stderr\n{self.err}"


@dataclass
class World:
    kube: Any
    vault: Any
    directory: Path
    kubeconfig: Path
    port: int
    runs: list[Run] = field(default_factory=list)
    shares: set[bytes] = field(default_factory=set)
    root_tokens: set[str] = field(default_factory=set)
    http: aiohttp.ClientSession | None = None

    # -- places --------------------------------------------------------------------------------
    @property
    def template(self) -> str:
        return f"http://{{ip}}:{self.port}"

    @property
    def workdir(self) -> Path:
        """The CLI's working directory (the default --fallback-dir)."""
        path = self.directory / "work"
        path.mkdir(exist_ok=True)
        return path

    @property
    def disk_path(self) -> Path:
        return self.directory / "custody" / "disk-shares"

    def pod_args(self) -> list[str]:
        # The Vault emulation of this world speaks plain http.
        return ["--kubeconfig", str(self.kubeconfig), "--address-template", self.template,
                "--allow-plain-http"]

    # -- Kubernetes ----------------------------------------------------------------------------
    def add_pod(self, name: str, ip: str) -> None:
        """Pod ``name`` of StatefulSet ``vault`` (controllers are off: made here, by hand)."""
        owner = self.kube.admin.get("apps/v1", "StatefulSet", "vault", VAULT_NS)
        if owner is None:
            owner = self.kube.admin.create({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "vault", "namespace": VAULT_NS},
                "spec": {"replicas": 3, "serviceName": "vault-internal",
                         "selector": {"matchLabels": LABELS},
                         "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [
                             {"name": "vault", "image": "hashicorp/vault:1.17"}]}}},
            })
        controller = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "vault",
                      "uid": owner["metadata"]["uid"], "controller": True}
        pod = self.kube.admin.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": VAULT_NS, "labels": LABELS,
                         "ownerReferences": [controller]},
            "spec": {"containers": [{"name": "vault", "image": "hashicorp/vault:1.17"}]},
        })
        pod["status"] = {
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        self.kube.admin.update_status(pod)

    # -- custody -------------------------------------------------------------------------------
    def custody_config(
        self,
        *,
        counts: dict[str, int] | None = None,
        threshold: int | None = 3,
        shares: int | None = 5,
        name: str = "custody.yaml",
        extra: dict[str, dict[str, Any]] | None = None,
        more: Sequence[dict[str, Any]] = (),
    ) -> Path:
        """Custodians kube-a, kube-b (Secrets unseal-a/-b) and disk (a 0600 file); ``extra``
        adds fields to custodians by name (``{"kube-a": {"rootTokenKey": "root-token"}}``)."""
        counts = {"kube-a": 2, "kube-b": 2, "disk": 2, **(counts or {})}
        custodians: list[dict[str, Any]] = [
            {"name": "kube-a", "kind": "kubernetesSecret", "namespace": CUSTODY_NS,
             "secretName": "unseal-a", "shares": counts["kube-a"]},
            {"name": "kube-b", "kind": "kubernetesSecret", "namespace": CUSTODY_NS_B,
             "secretName": "unseal-b", "shares": counts["kube-b"]},
            {"name": "disk", "kind": "file", "path": str(self.disk_path),
             "shares": counts["disk"]},
        ]
        custodians.extend(dict(custodian) for custodian in more)
        for custodian in custodians:
            custodian.update((extra or {}).get(custodian["name"], {}))
        document: dict[str, Any] = {"custodians": custodians}
        if threshold is not None:
            document["threshold"] = threshold
        if shares is not None:
            document["shares"] = shares
        self.disk_path.parent.mkdir(exist_ok=True)
        path = self.directory / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def place(self, layout: dict[str, Iterable[bytes]]) -> None:
        """Put shares (raw bytes) at custodians directly, as a person could by hand."""
        for custodian, materials in layout.items():
            texts = [base64.b64encode(material).decode() for material in materials]
            if custodian == "disk":
                self.disk_path.parent.mkdir(exist_ok=True)
                fd = os.open(self.disk_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write("".join(f"{text}\n" for text in texts))
            else:
                namespace, secret = SECRETS[custodian]
                self.kube.admin.apply({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": secret, "namespace": namespace},
                    "data": {f"share-{number}": base64.b64encode(text.encode()).decode()
                             for number, text in enumerate(texts, start=1)},
                })

    def held(self, custodian: str) -> list[bytes]:
        """The shares a custodian holds now (raw bytes), read behind the CLI's back."""
        if custodian == "disk":
            if not self.disk_path.exists():
                return []
            assert stat.S_IMODE(self.disk_path.stat().st_mode) == 0o600
            return parse_share_lines(self.disk_path.read_text())
        namespace, secret = SECRETS[custodian]
        found = self.kube.admin.get("v1", "Secret", secret, namespace)
        data = (found or {}).get("data") or {}
        return [decode_share(base64.b64decode(value).decode()) for key, value in
                sorted(data.items()) if key.startswith("share-")]

    def held_root_token(self, custodian: str, key: str = "root-token") -> str | None:
        """The root token a Secret custodian holds under ``key``, read behind the CLI's back."""
        namespace, secret = SECRETS[custodian]
        found = self.kube.admin.get("v1", "Secret", secret, namespace)
        value = ((found or {}).get("data") or {}).get(key)
        return base64.b64decode(value).decode().strip() if value else None

    def held_everywhere(self) -> dict[str, list[bytes]]:
        return {name: self.held(name) for name in ("kube-a", "kube-b", "disk")}

    # -- Vault ---------------------------------------------------------------------------------
    def bootstrap(self, shares: int = 5, threshold: int = 3) -> Any:
        """Initialise and unseal Vault behind the CLI's back; registers its secrets."""
        init = self.vault.admin.bootstrap(shares=shares, threshold=threshold)
        self.register_shares(init.keys)
        self.root_tokens.add(init.root_token)
        return init

    def register_shares(self, materials: Iterable[bytes]) -> None:
        self.shares.update(materials)

    async def vault_call(
        self, method: str, path: str, *, node: int = 0, body: Any = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        assert self.http is not None
        headers = {"X-Vault-Token": token} if token else {}
        async with self.http.request(
            method, f"{self.vault.addresses[node]}/v1/{path}", json=body, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def seal_status(self, node: int = 0) -> dict[str, Any]:
        status, body = await self.vault_call("GET", "sys/seal-status", node=node)
        assert status == 200
        result: dict[str, Any] = body
        return result

    async def unseal(self, materials: Sequence[bytes], *, node: int) -> dict[str, Any]:
        """Submit shares one at a time through sys/unseal, as an operator would."""
        body: dict[str, Any] = {}
        for material in materials:
            status, body = await self.vault_call(
                "PUT", "sys/unseal", node=node, body={"key": material.hex()}
            )
            assert status == 200, body
            if not body["sealed"]:
                break
        return body

    # -- the CLI -------------------------------------------------------------------------------
    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("UNSEALER_", "KUBERNETES_"))}
        env.update({
            "HOME": str(self.directory / "home"),  # no ~/.kube/config to fall back on
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            # Debug logs: the most log lines a run can make, all checked for leaks.
            "UNSEALER_LOG_LEVEL": "debug",
            "NO_PROXY": "127.0.0.0/8,localhost",
        })
        env.update(extra or {})
        return env

    def record(self, args: tuple[str, ...], rc: int, *, out: str, err: str) -> Run:
        """Record a run made by hand (a long-running ``unsealer run``) for the leak check."""
        run = Run(args=args, rc=rc, out=out, err=err)
        self.runs.append(run)
        assert "Traceback" not in err, str(run)
        return run

    async def cli(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> Run:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "unsealer", *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environment(env),
            cwd=self.workdir,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
        run = Run(args=args, rc=process.returncode or 0, out=out.decode(), err=err.decode(),
                  shows_root_token="--print-root-token" in args)
        self.runs.append(run)
        assert "Traceback" not in run.err, str(run)
        return run

    async def cli_on_terminal(self, *args: str, typed: bytes, prompt: str) -> Run:
        """Run with stdin on a pseudo-terminal; type ``typed`` once ``prompt`` is on stderr,
        then Ctrl-D. ``Run.echo`` is what the terminal showed (its echo of the input)."""
        leader, follower = os.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "unsealer", *args,
                stdin=follower, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self.environment(), cwd=self.workdir,
            )
            os.close(follower)
            follower = -1
            assert process.stderr is not None and process.stdout is not None
            seen = b""
            while prompt.encode() not in seen:  # echo is off once the prompt is shown
                line = await asyncio.wait_for(process.stderr.readline(), 30)
                assert line, f"no prompt; stderr so far: {seen.decode()}"
                seen += line
            os.write(leader, typed)
            os.write(leader, b"\x04")  # Ctrl-D on an empty line: end of input
            out, err = await asyncio.wait_for(process.communicate(), 60)
            echo = _drain(leader)
        finally:
            if follower >= 0:
                os.close(follower)
            os.close(leader)
        run = Run(args=args, rc=process.returncode or 0, out=out.decode(),
                  err=(seen + err).decode(), echo=echo.decode(errors="replace"))
        self.runs.append(run)
        assert "Traceback" not in run.err, str(run)
        return run

    # -- the leak check ------------------------------------------------------------------------
    def check_no_leaks(self) -> None:
        forms = [form for material in self.shares for form in secret_forms(material)]
        for run in self.runs:
            for form in forms:
                for where, text in (("stdout", run.out), ("stderr", run.err),
                                    ("terminal", run.echo)):
                    assert form not in text, f"a share leaked on {where} of {run.args}"
            for token in self.root_tokens:
                assert token not in run.err and token not in run.echo, \
                    f"the root token leaked on stderr of {run.args}"
                allowed = 1 if run.shows_root_token else 0
                assert run.out.count(token) <= allowed, \
                    f"the root token leaked on stdout of {run.args}"


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):  # EAGAIN: nothing more; EIO: the other side closed
            return chunks
        if not chunk:
            return chunks
        chunks += chunk


def decode_share(text: str) -> bytes:
    text = text.strip()
    try:
        material = bytes.fromhex(text)
        if 16 <= len(material) <= 33:
            return material
    except ValueError:
        pass
    return base64.b64decode(text, validate=True)


def parse_share_lines(text: str) -> list[bytes]:
    """Shares in the file custodian's format (also the fallback file's): one a line, # notes."""
    return [decode_share(line) for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def vault_init_terminal_text(keys_base64: Sequence[str], root_token: str, threshold: int) -> str:
    """What ``vault operator init`` prints on a terminal (Vault 1.17 CLI wording)."""
    lines = [f"Unseal Key {number}: {key}" for number, key in enumerate(keys_base64, start=1)]
    count = len(keys_base64)
    return "\n".join([
        *lines,
        "",
        f"Initial Root Token: {root_token}",
        "",
        f"Vault initialized with {count} key shares and a key threshold of {threshold}. "
        "Please securely",
        "distribute the key shares printed above. When the Vault is re-sealed,",
        f"restarted, or stopped, you must supply at least {threshold} of these keys to "
        "unseal it",
        "before it can start servicing requests.",
        "",
        f"Vault does not store the generated root key. Without at least {threshold} keys to",
        "reconstruct the root key, Vault will remain permanently sealed!",
        "",
        "It is possible to generate new unseal keys, provided you have a quorum of",
        'existing unseal keys shares. See "vault operator rekey" for more information.',
        "",
    ])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    port = free_port([*HOSTS, DEAD_HOST])
    async with (
        running_kube(controllers=()) as kube,
        running_vault(nodes=len(HOSTS), hosts=list(HOSTS), port=port) as vault,
        aiohttp.ClientSession() as http,
    ):
        for namespace in (VAULT_NS, CUSTODY_NS, CUSTODY_NS_B, ROOT_NS):
            kube.admin.create_namespace(namespace)
            kube.admin.ensure_service_account(namespace, "default")
        (tmp_path / "home").mkdir()
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        world = World(kube=kube, vault=vault, directory=tmp_path, kubeconfig=kubeconfig,
                      port=port, http=http)
        for index, host in enumerate(HOSTS):
            world.add_pod(f"vault-{index}", host)
        yield world
        world.check_no_leaks()


@pytest.fixture
def init_text() -> Any:
    return vault_init_terminal_text


@pytest.fixture
def share_lines() -> Any:
    return parse_share_lines
