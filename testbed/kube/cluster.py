"""The emulated control plane without its HTTP face: store, catalog, registry, auth, faults.

``Cluster`` is what the HTTP server serves and what the admin handle, the controllers and the
kubelet act on; ``Settings`` are the knobs tests turn (history window, bookmark interval,
controller delays, which controllers run).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.kube import rbac
from testbed.kube.auth import Authenticator
from testbed.kube.catalog import Catalog
from testbed.kube.faults import Faults, RequestCounter
from testbed.kube.openapi import OpenAPI
from testbed.kube.rbac import Authorizer
from testbed.kube.registry import Registry, WriteOptions
from testbed.kube.store import ADDED, Store
from testbed.kube.tokens import Signer
from testbed.kube.watching import Encoder

CONTROLLERS = (
    "namespace",
    "serviceaccount",
    "crd",
    "clusterrole-aggregation",
    "gc",
    "deployment",
    "replicaset",
    "statefulset",
    "daemonset",
    "kubelet",
)
SEED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class Settings:
    """Tunables of one emulated cluster (every field has a test-friendly default)."""

    host: str = "127.0.0.1"
    port: int = 0
    admin_token: str = "testbed-admin-token"
    watch_window: int = 1000  # events of history kept per resource for watch resume
    bookmark_interval: float = 60.0  # seconds of idle before a BOOKMARK
    watch_timeout: float = 1800.0  # when the client gives no timeoutSeconds
    controllers: frozenset[str] = field(default_factory=lambda: frozenset(CONTROLLERS))
    controller_delay: float = 0.0  # extra delay before each reconcile
    pod_ready_delay: float = 0.05  # kubelet: container start until Ready
    pod_termination_delay: float = 0.02  # kubelet: deletionTimestamp until gone
    crash_loop_interval: float = 0.2  # kubelet: restarts of a crash-looping container
    nodes: tuple[str, ...] = ("testbed-node",)
    pod_ip_prefix: str = "127.0.0."  # pod IPs are loopback addresses
    pod_ip_first: int = 10


class Cluster:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(window=settings.watch_window)
        self.catalog = Catalog(self.store)
        self.registry = Registry(self.store, self.catalog)
        self.signer = Signer()
        self.authn = Authenticator(self.registry, self.signer, settings.admin_token)
        self.authorizer = Authorizer(self.store)
        self.faults = Faults()
        self.requests = RequestCounter()
        self.openapi = OpenAPI(self.catalog)
        self.encoder = Encoder()
        self.open_watches = 0
        self.server_address = f"{settings.host}:{settings.port}"
        self.ca_pem = self_signed_ca()
        self._seed()

    def _seed(self) -> None:
        ns_type = self.catalog.lookup("", "v1", "namespaces")
        assert ns_type is not None
        opts = WriteOptions(field_manager="kube-apiserver")
        for name in SEED_NAMESPACES:
            self.registry.create(ns_type, "", {"metadata": {"name": name}}, opts=opts)
        for storage, obj in rbac.bootstrap_objects():
            rt = self.catalog.preferred(storage)
            assert rt is not None
            self.registry.create(rt, "", obj, opts=opts)
        node_type = self.catalog.lookup("", "v1", "nodes")
        assert node_type is not None
        for index, name in enumerate(self.settings.nodes):
            self.registry.create(node_type, "", node_object(name, index), opts=opts)

    def watch_opened(self) -> None:
        self.open_watches += 1

    def watch_closed(self) -> None:
        self.open_watches -= 1


def node_object(name: str, index: int) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24"},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.4",
                "osImage": "testbed",
                "kernelVersion": "",
                "containerRuntimeVersion": "testbed://1",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
        },
    }


def self_signed_ca() -> str:
    """A CA certificate for ``kube-root-ca.crt`` (the listener is plain http)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


__all__ = ["ADDED", "CONTROLLERS", "Cluster", "Settings"]
