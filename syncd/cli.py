"""The ``syncd`` command line: ``syncd run``, ``syncd audit-relay`` and ``syncd --version``.

Every option is also an environment variable (``SYNCD_*``); see :mod:`plumbing.options`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
from collections.abc import Sequence
from pathlib import Path

import structlog

from plumbing import kubeconfig
from plumbing.hardening import disable_core_dumps
from plumbing.health import address_option
from plumbing.lifecycle import serve
from plumbing.options import (
    OptionParser,
    add_telemetry_options,
    fail,
    parse_bool,
    positive_float,
    positive_int,
)
from plumbing.version import VERSION
from syncd.audit_relay import Relay, RelaySettings
from syncd.changes import SOURCES
from syncd.durations import parse_duration
from syncd.instant import InstantSettings
from syncd.leadership import LeadershipLost
from syncd.operator import Settings, run
from syncd.vault_addresses import parse_patterns

PROG = "syncd"


def build_parser() -> OptionParser:
    parser = OptionParser(
        prog=PROG,
        env_prefix="SYNCD_",
        description="Mirror Vault KV secrets into Kubernetes Secrets and restart the workloads "
        "that use them when the data really changes.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the controller until SIGTERM",
        description="Run the controller until SIGTERM or SIGINT.",
        env_prefix="SYNCD_",
    )
    run.option(
        "--kubeconfig", default=None,
        help="kubeconfig file (default: in-cluster service account, else ~/.kube/config)",
    )
    run.option(
        "--namespace", default="vault-syncd",
        help="syncd's own namespace: the fingerprint key Secret and the default VaultAuth",
    )
    run.option(
        "--watch-namespace", type=_namespaces, default="",
        help="only sync VaultStaticSecrets of these namespaces, comma-separated (default: all "
        "namespaces); with the Roles of manifests/syncd/namespaced/ instead of the ClusterRole",
    )
    run.option(
        "--max-concurrent-reconciles", type=positive_int, default=4,
        help="reconciles running at once",
    )
    run.option("--vault-threads", type=positive_int, default=4,
               help="concurrent Vault requests through hvac: logins, dynamic and PKI engines"
                    " (KV reads, one per reconcile, run on the event loop)")
    run.option(
        "--default-refresh-after", type=_duration, default="60s",
        help="refresh interval of a VaultStaticSecret without spec.refreshAfter",
    )
    run.option(
        "--rollout-debounce", type=_duration, default="2s",
        help="changes within this window restart each workload once",
    )
    run.option(
        "--backoff-max", type=_duration, default="5m",
        help="longest wait before a retry (a VaultStaticSecret's refreshAfter, if shorter)",
    )
    run.option(
        "--shutdown-grace", type=_duration, default="10s",
        help="time given to reconciles in flight on SIGTERM",
    )
    run.option(
        "--leader-elect", type=_bool, default=True, metavar="BOOL",
        help="only the holder of the Lease vault-syncd works; other replicas stand by with warm "
        "caches (--leader-elect=false for a single replica without a Lease)",
    )
    run.option(
        "--leader-election-namespace", default=None,
        help="namespace of the Lease (default: --namespace)",
    )
    run.option(
        "--lease-duration", type=_duration, default="15s",
        help="a standby takes the Lease over after not seeing it renewed for this long",
    )
    run.option(
        "--renew-deadline", type=_duration, default="10s",
        help="the leader gives up (and exits) when it could not renew for this long",
    )
    run.option(
        "--retry-period", type=_duration, default="2s",
        help="how often the Lease is renewed, or tried for",
    )
    run.option(
        "--health-address", type=address_option, default="0.0.0.0:8080",
        help="host:port of /healthz and /readyz; empty to serve no probes",
    )
    run.option(
        "--allowed-vault-addresses", type=_addresses, default=None,
        help="comma-separated Vault addresses VaultConnections may use: exact URLs, or globs "
        "on the host or port (https://vault-*.vault.svc:8200, http://127.0.0.1:*); default: "
        "the addresses of the VaultConnections in --namespace",
    )
    run.option(
        "--template-deadline", type=_duration, default="1s",
        help="how long the templates of one VaultStaticSecret may take to render; the render "
        "is then stopped and reported (TemplateTooExpensive)",
    )
    run.option(
        "--template-memory-mib", type=positive_int, default=24,
        help="memory (MiB) one render may use in its worker process, beyond the idle worker's",
    )
    run.option(
        "--template-workers", type=positive_int, default=2,
        help="worker processes rendering templates at once (each about 11 MiB once started); "
        "one namespace uses all but one of them at most",
    )
    run.option(
        "--instant-updates-source", choices=SOURCES, default="none",
        help="where change notices for VaultStaticSecrets with syncConfig.instantUpdates come "
        "from: events (Vault Enterprise event notifications), audit (syncd audit-relay "
        "sidecars of Community Vault), none (poll every refreshAfter)",
    )
    run.option(
        "--instant-updates-safety-interval", type=_duration, default="10m",
        help="refresh interval of an instant VaultStaticSecret while its source is connected "
        "(never shorter than its refreshAfter): catches lost notices",
    )
    run.option(
        "--audit-relay-listen", type=address_option, default="0.0.0.0:8201",
        help="host:port where syncd accepts audit relays (--instant-updates-source audit)",
    )
    run.option(
        "--audit-relay-token-file", default=None,
        help="file holding the token audit relays must present (--instant-updates-source audit)",
    )
    add_telemetry_options(run)

    relay = commands.add_parser(
        "audit-relay",
        help="relay a Vault socket audit device's KV writes to syncd (a Vault pod sidecar)",
        description="Listen where a Vault socket audit device writes, keep only successful KV "
        "writes (mount, path, version) and forward them to syncd; never slow Vault down.",
        env_prefix="SYNCD_RELAY_",
    )
    relay.option(
        "--listen", default="/vault/audit/relay.sock",
        help="unix socket path (socket_type=unix) or host:port (socket_type=tcp) Vault's "
        "socket audit device writes to",
    )
    relay.option("--syncd", default=None, help="host:port of syncd's --audit-relay-listen")
    relay.option("--token-file", default=None, help="file holding the relay token")
    relay.option(
        "--vault-address", default=None,
        help="this Vault's address as the VaultConnections write it "
        "(e.g. http://vault.vault.svc:8200)",
    )
    add_telemetry_options(relay)
    return parser


def _duration(text: str) -> float:
    """A duration option (``30s``, ``1.5m``, ``1h``) in seconds."""
    try:
        return positive_float(str(parse_duration(text)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _namespaces(text: str) -> tuple[str, ...]:
    """``a,b`` -> ("a", "b"); empty: all namespaces."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if not _NAMESPACE.fullmatch(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a namespace name (RFC 1123 label)")
    return names


def _bool(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _addresses(text: str) -> tuple[str, ...]:
    try:
        return tuple(p.text for p in parse_patterns(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        watch_namespaces=args.watch_namespace,
        concurrency=args.max_concurrent_reconciles,
        vault_threads=args.vault_threads,
        default_refresh_seconds=args.default_refresh_after,
        debounce_seconds=args.rollout_debounce,
        backoff_max_seconds=args.backoff_max,
        grace_seconds=args.shutdown_grace,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        lease_duration_seconds=args.lease_duration,
        renew_deadline_seconds=args.renew_deadline,
        retry_period_seconds=args.retry_period,
        health_address=args.health_address,
        allowed_vault_addresses=args.allowed_vault_addresses,
        template_deadline_seconds=args.template_deadline,
        template_memory_bytes=args.template_memory_mib * 1024 * 1024,
        template_workers=args.template_workers,
        instant_updates=InstantSettings(
            source=args.instant_updates_source,
            safety_seconds=args.instant_updates_safety_interval,
            relay_listen=args.audit_relay_listen,
            relay_token=_read_token(args.audit_relay_token_file)
            if args.instant_updates_source == "audit" else "",
        ),
    )


def _read_token(path: str | None) -> str:
    if not path:
        fail(PROG, "a token file is required (--audit-relay-token-file, --token-file)")
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        fail(PROG, f"token file: {exc.strerror}: {path}")
    if not token:
        fail(PROG, f"token file {path} is empty")
    return token


async def _run(settings: Settings, stop: asyncio.Event) -> None:
    try:
        await run(settings, stop)
    except LeadershipLost as exc:
        # As a controller-runtime manager does: exit non-zero, and come back as a standby.
        structlog.get_logger("syncd").error("exiting", error=str(exc))
        raise SystemExit(1) from None
    except OSError as exc:  # the probe address cannot be bound
        structlog.get_logger("syncd").error("exiting", error=str(exc))
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> None:
    disable_core_dumps()  # tokens and secret values live in this process's memory
    args: argparse.Namespace = build_parser().parse_args(argv)
    if args.command == "audit-relay":
        # Checked here rather than with required=True, which would ignore the environment.
        for option in ("syncd", "token_file", "vault_address"):
            if not getattr(args, option):
                fail(f"{PROG} audit-relay", f"--{option.replace('_', '-')} is required")
        relay = Relay(RelaySettings(
            listen=args.listen, syncd=args.syncd, token=_read_token(args.token_file),
            vault_address=args.vault_address,
        ))
        serve(prog=f"{PROG} audit-relay", version=VERSION, log_format=args.log_format,
              log_level=args.log_level, main=relay.run)
        return
    if args.command == "run":
        settings = _settings(args)
        if settings.kubeconfig:
            try:  # a kubeconfig that cannot be used is bad configuration: one line, exit 2
                kubeconfig.from_file(settings.kubeconfig)
            except kubeconfig.KubeConfigError as exc:
                fail(PROG, f"--kubeconfig {exc}")
        if settings.leader_elect:
            try:
                settings.lease()
            except ValueError as exc:
                fail(PROG, f"--lease-duration, --renew-deadline, --retry-period: {exc}")
        serve(
            prog=PROG,
            version=VERSION,
            log_format=args.log_format,
            log_level=args.log_level,
            main=functools.partial(_run, settings),
        )
