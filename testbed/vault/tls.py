"""TLS for the emulation: a CA, and for every node a certificate for its pod's DNS names.

Services verify Vault's certificate through ``VAULT_CACERT``; the emulation writes its CA to
``vault-ca.pem`` so that path is exercised for real. With a state directory the CA is kept
there and reused, so a restarted process is still trusted by clients holding the old CA file.

Node ``i`` is pod ``vault-i`` of a StatefulSet whose governing Service is ``service`` (the Helm
chart's ``vault-internal``) in ``namespace``: its certificate carries that pod's stable names
(``vault-i``, ``vault-i.vault-internal``, ``vault-i.vault-internal.vault.svc``, ...), the
Service-wide names (``vault``, ``vault.vault.svc``, ``localhost``) and its IP, and no other
pod's name. That is what lets a client tell vault-0 from vault-1 by certificate, and what
:meth:`VaultTls.issue` lets a test abuse: a server with a valid certificate for another name.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.pki import Authority

CA_FILE = "vault-ca.pem"
SERVICE = "vault-internal"
NAMESPACE = "vault"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def pod_names(pod: str, *, service: str = SERVICE, namespace: str = NAMESPACE) -> list[str]:
    """The DNS names a StatefulSet pod is reachable at (the Helm chart's SAN list, per pod)."""
    stable = f"{pod}.{service}"
    return [pod, stable, f"{stable}.{namespace}", f"{stable}.{namespace}.svc",
            f"{stable}.{namespace}.svc.cluster.local"]


@dataclass(frozen=True)
class VaultTls:
    """The emulation's CA and where its files go; issues every node's certificate."""

    authority: Authority
    directory: Path
    namespace: str = NAMESPACE
    service: str = SERVICE

    @classmethod
    def create(
        cls,
        *,
        directory: Path,
        state_dir: Path | None = None,
        namespace: str = NAMESPACE,
        service: str = SERVICE,
    ) -> VaultTls:
        authority = Authority.load_or_create(
            "vault", state_dir or directory, title="testbed vault CA"
        )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CA_FILE).write_bytes(authority.ca_file.read_bytes())
        return cls(authority, directory, namespace, service)

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_FILE

    def issue(
        self, name: str, *, names: Sequence[str] = (), ips: Sequence[str] = ()
    ) -> TlsFiles:
        """A server certificate from this CA for ``name`` (+ ``names``, ``ips``)."""
        dns = [n for n in names if not _is_ip(n)]
        addresses = [*ips, *(n for n in names if _is_ip(n))]
        cert, key = self.authority.issue(
            name, server=True, names=tuple(dns), ips=tuple(dict.fromkeys(addresses)),
            directory=self.directory / "certs", days=30,
        )
        return TlsFiles(ca=self.ca_file, cert=cert, key=key)

    def node(self, index: int, host: str) -> TlsFiles:
        """Node ``index``'s certificate: pod ``vault-{index}``'s names, the Service's, its IP."""
        pod = f"vault-{index}"
        shared = ["vault", f"vault.{self.namespace}", f"vault.{self.namespace}.svc", "localhost"]
        return self.issue(
            pod, names=[*pod_names(pod, service=self.service, namespace=self.namespace), *shared],
            ips=sorted({"127.0.0.1", host}),
        )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def make_tls(*, directory: Path, hosts: list[str], state_dir: Path | None = None) -> TlsFiles:
    """Write ``vault-ca.pem`` and one server certificate for every host into ``directory``."""
    tls = VaultTls.create(directory=directory, state_dir=state_dir)
    return tls.issue("vault", names=["localhost"], ips=sorted({"127.0.0.1", *hosts}))
