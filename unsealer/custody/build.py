"""From a validated :class:`~.config.CustodyConfig` to live custodians and the peer server.

Kept apart from the config so that loading a config (and refusing a bad one) needs no
Kubernetes client and no network, and so that tests can build custodians from a config with a
client of their choosing.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from plumbing.kube import Kube
from unsealer.custody.config import (
    CustodianConfig,
    CustodyConfig,
    CustodyConfigError,
    EnvironmentConfig,
    FileConfig,
    KubeSecretConfig,
    PeerConfig,
)
from unsealer.custody.custodian import Backend, Custodian, StoredCustodian
from unsealer.custody.encryption import AgeSealer
from unsealer.custody.environment import EnvironmentBackend
from unsealer.custody.file import FileBackend
from unsealer.custody.kube_secret import KubeSecretBackend
from unsealer.custody.peer import (
    IsSealed,
    PeerCustodian,
    PeerServer,
    client_ssl_context,
    server_ssl_context,
)
from unsealer.shares import FingerprintKey

#: How long a fetch from a peer waits, in all, when the peer says "too many requests".
RATE_LIMIT_PATIENCE = 30.0


def build_custodians(
    config: CustodyConfig,
    *,
    kube: Kube | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Custodian]:
    """One custodian per entry the unsealer reads, by name, in config order: every custodian
    but those that only hold the root token (``shares: 0``; see
    :attr:`~.config.CustodyConfig.share_custodians`).

    ``kube`` is required when a ``kubernetesSecret`` custodian is configured.
    """
    backends: dict[str, Backend] = {}
    for spec in config.share_custodians:
        backend = _backend(spec, kube=kube, environ=environ)
        if backend is not None:
            backends[spec.name] = backend
    custodians: dict[str, Custodian] = {}
    for spec in config.share_custodians:
        if isinstance(spec, PeerConfig):
            custodians[spec.name] = PeerCustodian(
                name=spec.name,
                url=spec.url,
                ssl_context=_client_tls(spec),
                server_name=spec.server_name,
                timeout=spec.timeout,
                # The peer server's bucket refills one request per 6 s: a power cut of three
                # pods after its burst is spent is served within 18 s if we wait our turn.
                rate_limit_patience=RATE_LIMIT_PATIENCE,
            )
            continue
        sealer = None
        if spec.encryption is not None:
            sealer = AgeSealer(
                recipient=spec.encryption.recipient,
                identity_from=spec.encryption.identity_from,
                holder=backends[spec.encryption.identity_from],
            )
        custodians[spec.name] = StoredCustodian(
            name=spec.name, kind=spec.kind, backend=backends[spec.name], sealer=sealer
        )
    return custodians


def build_peer_server(
    config: CustodyConfig,
    *,
    custodians: Mapping[str, Custodian],
    is_sealed: IsSealed,
    fingerprint_key: FingerprintKey,
) -> PeerServer | None:
    """The peer server the config asks for (not started), or ``None``."""
    server = config.peer_server
    if server is None:
        return None
    try:
        context = server_ssl_context(
            ca_file=server.ca_file, cert_file=server.cert_file, key_file=server.key_file
        )
    except (OSError, ssl.SSLError) as exc:
        raise CustodyConfigError(
            f"custody config {config.source}: peerServer: cannot load TLS files: {exc}"
        ) from None
    return PeerServer(
        sources=[custodians[name] for name in server.releases],
        is_sealed=is_sealed,
        ssl_context=context,
        fingerprint_key=fingerprint_key,
        allowed_peers=server.allowed_peers,
        host=server.host,
        port=server.port,
        burst=server.burst,
        refill_seconds=server.refill_seconds,
    )


def _backend(
    spec: CustodianConfig,
    *,
    kube: Kube | None,
    environ: Mapping[str, str] | None,
) -> Backend | None:
    if isinstance(spec, KubeSecretConfig):
        if kube is None:
            raise CustodyConfigError(
                f"custodian {spec.name!r}: a kubernetesSecret custodian needs a Kubernetes client"
            )
        return KubeSecretBackend(
            custodian=spec.name,
            kube=kube,
            namespace=spec.namespace,
            secret_name=spec.secret_name,
            key_prefix=spec.key_prefix,
            identity_key=spec.identity_key,
        )
    if isinstance(spec, FileConfig):
        return FileBackend(custodian=spec.name, path=spec.path, identity_file=spec.identity_file)
    if isinstance(spec, EnvironmentConfig):
        return EnvironmentBackend(
            custodian=spec.name,
            variable=spec.variable,
            identity_variable=spec.identity_variable,
            environ=environ,
        )
    return None


def _client_tls(spec: PeerConfig) -> ssl.SSLContext:
    try:
        return client_ssl_context(
            ca_file=spec.ca_file, cert_file=spec.cert_file, key_file=spec.key_file
        )
    except (OSError, ssl.SSLError) as exc:
        raise CustodyConfigError(
            f"custodian {spec.name!r}: cannot load TLS files: {exc}"
        ) from None
