"""What ``unsealer run`` was told (see ``unsealer run --help``), as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass, field

from unsealer.discovery import (
    DEFAULT_ADDRESS,
    DEFAULT_SELECTOR,
    DEFAULT_SERVER_NAME,
    DEFAULT_STATEFULSET,
)
from unsealer.notifications import Target


@dataclass(frozen=True, kw_only=True)
class Settings:
    #: The custody config file (see :mod:`unsealer.custody.config`).
    custody_config: str
    kubeconfig: str | None = None
    #: Vault's namespace and the label selector of its server pods (the Helm chart's).
    namespace: str = "vault"
    selector: str = DEFAULT_SELECTOR
    #: The StatefulSet whose pods are Vault: only pods it controls are ever spoken to.
    statefulset: str = DEFAULT_STATEFULSET
    #: How to reach one pod: ``{ip}``, ``{pod}`` and ``{namespace}`` are filled in.
    address_template: str = DEFAULT_ADDRESS
    #: The name each pod's certificate must prove: ``{pod}``, ``{service}`` (the
    #: StatefulSet's serviceName) and ``{namespace}`` are filled in.
    server_name_template: str = DEFAULT_SERVER_NAME
    #: CA bundle for https addresses (None: the system's).
    ca_file: str | None = None
    #: Talk plain http to Vault (the Helm chart's default): no proof of Vault's identity, so
    #: never more than the threshold of shares per attempt and no odd-share search. Announced.
    allow_plain_http: bool = False
    #: Attempts that send shares to one pod without unsealing it, before that pod gets no
    #: more shares until ``share_budget_seconds`` have passed (or it unseals, or is replaced).
    share_attempt_budget: int = 5
    share_budget_seconds: float = 3600.0
    #: Every pod's seal-status is read this often, to catch a Vault that sealed itself; a
    #: sealed pod's next attempt comes at the latest then (the poll cuts a longer backoff),
    #: so this bounds the wait once a missing custodian is back.
    poll_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    grace_seconds: float = 10.0
    #: Hex key of the share fingerprints (None: a random one per process).
    fingerprint_key: bytes | None = None
    #: Development only: start even if one custodian (or one plus its key) holds the threshold.
    allow_unsafe_custody: bool = False
    #: How many other share subsets to try after a wrong share set, at most.
    max_retry_subsets: int = 8
    #: Serve the peer server only, and never unseal: for the node that holds shares for
    #: another unsealer but could never reach the threshold on its own (it would only post
    #: UnsealFailed Events about pods the other unsealer unseals).
    peer_only: bool = False
    #: ``host:port`` of /healthz, /readyz and /metrics; empty: none (``unsealer run`` defaults
    #: to ``0.0.0.0:8080``).
    health_address: str = ""
    #: Webhooks told when a pod seals, unseals or cannot be unsealed (their URLs are secrets:
    #: kept out of repr).
    notify: tuple[Target, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.address_template.startswith("https://") and not self.allow_plain_http:
            raise ValueError(
                f"address template {self.address_template!r} is not https: Vault's identity"
                " could not be verified; pass allow_plain_http (--allow-plain-http) to accept"
            )
