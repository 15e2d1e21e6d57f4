"""The TLS corpus (tests/corpus/tls/): broken CA bundles, certificates and keys, at every use.

Each case stands for the material its entry lists: a CA bundle (a VaultConnection's
``caCertSecretRef`` and ``caCertPath``, the unsealer's peer ``caFile``), a certificate to
present (peer ``certFile``), or its key (peer ``keyFile``). Every use refuses it with a message
naming which material, in words rather than OpenSSL's, and without a byte of the file.
``--ca-file`` is tests/unsealer/cli/test_corpus_tls.py's.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from plumbing.tls import TLSMaterialError
from plumbing.vault import VaultPool
from syncd.specs import parse_vault_auth, parse_vault_connection
from syncd.vault_addresses import AllowedAddresses
from syncd.vault_clients import AuthError, VaultClients
from unsealer.custody.peer import client_ssl_context, server_ssl_context

TLS = Path(__file__).resolve().parents[2] / "corpus" / "tls"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((TLS / "cases.yaml").read_text())
GOOD_CERT, GOOD_KEY = TLS / "good-cert.pem", TLS / "good-key.pem"
ROLES = [(name, role) for name, case in sorted(CASES.items()) for role in case["as"]]
#: OpenSSL's words, which name neither the file nor the problem.
OPENSSL = re.compile(r"PEM lib|_ssl\.c|\[X509|\[SSL")


def assert_clear(message: str, *, names: str, material: Path) -> None:
    assert names in message, message
    assert not OPENSSL.search(message), message
    data = material.read_bytes()
    # Not a line, nor any 16 bytes, of what the file holds.
    for line in data.decode("latin-1").splitlines():
        if len(line) >= 16:
            assert line[:16] not in message, message
    assert "\n" not in message and len(message) < 400, message


def test_every_file_has_its_case() -> None:
    files = {p.stem for p in TLS.glob("*.pem")} - {"good-cert", "good-key"}
    assert files == set(CASES)


@pytest.mark.parametrize(("name", "role"), ROLES, ids=[f"{n}-as-{r}" for n, r in ROLES])
@pytest.mark.parametrize("side", ["client", "server"])
def test_peer_mtls_material(name: str, role: str, side: str) -> None:
    material = TLS / f"{name}.pem"
    files = {"ca_file": GOOD_CERT, "cert_file": GOOD_CERT, "key_file": GOOD_KEY}
    files[{"ca": "ca_file", "cert": "cert_file", "key": "key_file"}[role]] = material
    field = {"ca": "caFile", "cert": "certFile", "key": "keyFile"}[role]
    build = client_ssl_context if side == "client" else server_ssl_context
    with pytest.raises(TLSMaterialError) as info:
        build(**files)
    assert_clear(str(info.value), names=f"{field} {material}", material=material)


class _Kube:
    """The one request VaultClients makes before a login: the CA Secret."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/api/v1/namespaces/app/secrets/vault-ca"), path
        return {"type": "Opaque", "data": {"ca.crt": base64.b64encode(self.data).decode()}}


CA_CASES = [name for name, role in ROLES if role == "ca"]


@pytest.mark.parametrize("name", CA_CASES)
@pytest.mark.parametrize("source", ["caCertSecretRef", "caCertPath"])
async def test_vault_connection_ca(name: str, source: str) -> None:
    material = TLS / f"{name}.pem"
    spec: dict[str, Any] = {"address": "https://vault.vault.svc:8200"}
    spec[source] = "vault-ca" if source == "caCertSecretRef" else str(material)
    connection = parse_vault_connection({
        "kind": "VaultConnection", "metadata": {"name": "vault", "namespace": "app"},
        "spec": spec})
    auth = parse_vault_auth({
        "kind": "VaultAuth", "metadata": {"name": "app", "namespace": "app"},
        "spec": {"method": "token", "token": {"secretRef": {"name": "vault-token"}}}})
    pool = VaultPool(max_workers=1)
    clients = VaultClients(
        kube=_Kube(material.read_bytes()),  # type: ignore[arg-type]
        pool=pool, addresses=AllowedAddresses(
            patterns=None, operator_namespace="app", connections=lambda: [
                {"metadata": {"namespace": "app", "name": "vault"}, "spec": spec}]))
    try:
        with pytest.raises(AuthError) as info:
            await clients.get(namespace="app", auth=auth, connection=connection)
    finally:
        pool.shutdown()
    message = str(info.value)
    assert_clear(message, names=f"VaultConnection app/vault: spec.{source}", material=material)
