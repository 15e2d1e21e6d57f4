"""Fixtures for the custody and share tests: Vault-shaped shares, captured logs, a leak check,
a certificate authority for mutual TLS, and the Kubernetes emulation (``testbed.kube``).

Helpers are handed out as fixtures because the suite runs with ``--import-mode=importlib``,
where test modules cannot import each other.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyshamir
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry
from testbed.pki import Authority
from unsealer.shares import Share

# --- shares ------------------------------------------------------------------------------------


@pytest.fixture
def make_shares() -> Callable[..., list[Share]]:
    """``make_shares(n, t)``: a fresh Vault-style split of a random 32-byte key."""

    def make(count: int = 5, threshold: int = 3, *, prefix: str = "init") -> list[Share]:
        key = os.urandom(32)
        if count == 1:
            return [Share(key, origin=f"{prefix}/1")]
        parts = pyshamir.split(key, count, threshold)
        return [Share(part, origin=f"{prefix}/{i}") for i, part in enumerate(parts, start=1)]

    return make


def secret_forms(share: Share) -> list[str]:
    """Every text form of a share that must never appear in a log, message or repr."""
    hexed = share.hex()
    b64 = share.base64()
    return [hexed, hexed.upper(), b64, b64.rstrip("="), base64.urlsafe_b64encode(
        bytes.fromhex(hexed)).decode().rstrip("=")]


@pytest.fixture
def assert_no_leak() -> Callable[..., None]:
    """``assert_no_leak(text, shares)``: none of the shares' hex/base64 forms is in ``text``."""

    def check(text: str, shares: Iterable[Share]) -> None:
        for share in shares:
            for form in secret_forms(share):
                assert form not in text, f"share material of {share!r} leaked"

    return check


@pytest.fixture
def logs() -> io.StringIO:
    """Structured logs (JSON lines, debug and up) captured for the test."""
    stream = io.StringIO()
    telemetry.configure(
        service_name="unsealer",
        service_version="test",
        log_level="debug",
        span_exporter=InMemorySpanExporter(),
        stream=stream,
    )
    return stream


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def log_events() -> Callable[[io.StringIO], list[dict[str, Any]]]:
    return events


# --- certificates -----------------------------------------------------------------------------


@pytest.fixture
def make_authority(tmp_path: Path) -> Callable[[str], Authority]:
    return lambda name: Authority.create(name, tmp_path)


# --- the Kubernetes emulation ------------------------------------------------------------------

CUSTODY_NAMESPACE = "vault-custody"


@dataclass
class Kube:
    """The running emulation (``testbed.kube``) and helpers for the custody namespace."""

    running: Any

    def put_secret(self, name: str, data: dict[str, bytes]) -> None:
        self.running.admin.create({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": CUSTODY_NAMESPACE},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        })

    def secret(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.running.admin.get(
            "v1", "Secret", name, CUSTODY_NAMESPACE
        )
        return found

    def data(self, name: str) -> dict[str, bytes]:
        stored = (self.secret(name) or {}).get("data") or {}
        return {key: base64.b64decode(value) for key, value in stored.items()}

    def client(self, token: str | None = None) -> Any:
        """A plumbing Kube client, as the admin or as the bearer of ``token``."""
        from plumbing.kube import Kube as Client
        from plumbing.kubeconfig import Credentials

        bearer = f"Bearer {token or self.running.settings.admin_token}"

        async def authorization() -> str:
            return bearer

        return Client(Credentials(server=self.running.url, ssl=None,
                                  authorization=authorization))

    def service_account_token(self, *, rules: list[dict[str, Any]]) -> str:
        """A token for ServiceAccount vault/unsealer bound to a Role with ``rules``."""
        admin = self.running.admin
        admin.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "unsealer", "namespace": CUSTODY_NAMESPACE}, "rules": rules,
        })
        admin.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "unsealer", "namespace": CUSTODY_NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "unsealer"},
            "subjects": [{"kind": "ServiceAccount", "name": "unsealer", "namespace": "vault"}],
        })
        token: str = admin.mint_token("vault", "unsealer")
        return token


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    """The Kubernetes emulation with a custody namespace; skipped if it is not importable."""
    testbed = pytest.importorskip("testbed.kube")
    async with testbed.running_kube(controllers=()) as running:
        running.admin.create_namespace(CUSTODY_NAMESPACE)
        yield Kube(running)


@pytest.fixture
async def kube_client(kube: Kube) -> AsyncIterator[Any]:
    """An admin plumbing client for ``kube``."""
    api = kube.client()
    try:
        yield api
    finally:
        await api.close()
