"""The ``unsealer`` command line.

- ``unsealer run``: the service (watch the Vault pods, unseal from split custody) until SIGTERM.
- ``unsealer status``: the seal state of every Vault pod (table, or ``--output json``).
- ``unsealer init``: initialise Vault straight into split custody.
- ``unsealer custody verify``: check the custodians' shares against Vault and the invariant.
- ``unsealer custody import``: store the shares of ``vault operator init`` output (stdin).
- ``unsealer custody rbac``: the Roles and RoleBindings the custody config needs.

Every option is also an environment variable (``UNSEALER_*``; see :mod:`plumbing.options`),
except the few that expose or destroy secrets (``--print-root-token``, ``--replace``), which
must be typed each time. The one-shot commands live in :mod:`unsealer.commands`; their exit
codes are documented there and in each ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Sequence

from plumbing.hardening import disable_core_dumps
from plumbing.health import address_option
from plumbing.lifecycle import serve
from plumbing.options import OptionParser, add_telemetry_options
from plumbing.tls import TLSMaterialError, ca_context
from plumbing.version import VERSION
from unsealer.commands import custody_import, initialize, options, rbac, status, verify
from unsealer.commands.runner import (
    OK,
    PROG,
    USAGE,
    CommandError,
    failure_code,
    failure_message,
    report,
)
from unsealer.notifications import Target, parse_targets
from unsealer.settings import Settings


def build_parser() -> OptionParser:
    parser = OptionParser(
        prog=PROG,
        env_prefix="UNSEALER_",
        description="Watch the Vault pods and unseal each one that comes back sealed, "
        "gathering the threshold of unseal shares from split custody.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    status.add_parser(commands)
    initialize.add_parser(commands)
    custody = commands.add_parser(
        "custody",
        help="check or fill the custodians of the unseal shares",
        description="Check (verify) or fill (import) the custodians of the unseal shares.",
        env_prefix="UNSEALER_",
    )
    custody_commands = custody.add_subparsers(
        dest="custody_command", required=True, metavar="COMMAND"
    )
    verify.add_parser(custody_commands)
    custody_import.add_parser(custody_commands)
    rbac.add_parser(custody_commands)
    return parser


def _add_run(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run: OptionParser = commands.add_parser(
        "run",
        help="watch and unseal until SIGTERM",
        description="Watch the Vault pods and unseal them until SIGTERM or SIGINT. Before "
        "serving, the custody config is checked against the split-custody invariant.",
        env_prefix="UNSEALER_",
    )
    options.add_custody_config(run)
    options.add_kubernetes(run)
    options.add_vault_pods(run)
    run.option(
        "--poll-interval", type=options.duration, default="10s", metavar="DURATION",
        help="how often every pod's seal-status is read, to catch a Vault that sealed itself; "
        "also the longest a sealed pod waits for its next attempt",
    )
    run.option(
        "--backoff-max", type=options.duration, default="5m", metavar="DURATION",
        help="longest wait before retrying a failed unseal",
    )
    run.option(
        "--shutdown-grace", type=options.duration, default="10s", metavar="DURATION",
        help="time given to unseals in flight on SIGTERM",
    )
    run.option(
        "--fingerprint-key", type=options.fingerprint_key, default=None, metavar="HEX",
        help="hex key (16+ bytes) of the share fingerprints in logs; the same key in every "
        "unsealer makes their logs comparable (default: a random one per process)",
    )
    options.add_unsafe_custody(run)
    run.option(
        "--max-retry-subsets", type=options.non_negative_int, default=8, metavar="N",
        help="after a wrong share set, how many other consistent subsets to try at most",
    )
    run.option(
        "--share-attempt-budget", type=options.count, default=5, metavar="N",
        help="attempts that send shares to one pod without unsealing it, per "
        "--share-budget-window, at most",
    )
    run.option(
        "--share-budget-window", type=options.duration, default="1h", metavar="DURATION",
        help="the window of --share-attempt-budget",
    )
    run.switch(
        "--peer-only",
        help="only serve the peerServer of the custody config (release shares to another "
        "unsealer); never unseal from this process",
    )
    run.option(
        "--health-address", type=address_option, default="0.0.0.0:8080",
        help="host:port of /healthz, /readyz and /metrics; empty to serve none",
    )
    run.option(
        "--notify", type=_notify, default="", metavar="URLS",
        help="webhooks told when a Vault pod seals, unseals or cannot be unsealed: "
        "comma-separated URLs, generic JSON, or slack:URL for Slack-compatible incoming "
        "webhooks; give them from a Secret (a webhook URL is a credential)",
    )
    add_telemetry_options(run)
    run.set_defaults(entry=_run)


def _notify(text: str) -> tuple[Target, ...]:
    try:
        return parse_targets(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` of ``unsealer run`` from its parsed options.

    Raises :class:`~unsealer.commands.runner.CommandError` (exit 2) without a custody config:
    it is required, and may come from the flag or ``UNSEALER_CUSTODY_CONFIG``.
    """
    if not args.custody_config:
        raise CommandError(
            "--custody-config (env UNSEALER_CUSTODY_CONFIG) is required", code=USAGE
        )
    if not args.address_template.startswith("https://") and not args.allow_plain_http:
        raise CommandError(
            f"--address-template {args.address_template}: plain http proves nothing about who"
            " answers at a pod's IP, and shares would go to it; use https (see README, unsealer"
            " TLS) or pass --allow-plain-http",
            code=USAGE,
        )
    return Settings(
        custody_config=args.custody_config,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        selector=args.selector,
        statefulset=args.statefulset,
        address_template=args.address_template,
        server_name_template=args.server_name,
        allow_plain_http=args.allow_plain_http,
        share_attempt_budget=args.share_attempt_budget,
        share_budget_seconds=args.share_budget_window,
        ca_file=args.ca_file,
        poll_seconds=args.poll_interval,
        backoff_max_seconds=args.backoff_max,
        grace_seconds=args.shutdown_grace,
        fingerprint_key=args.fingerprint_key,
        allow_unsafe_custody=args.allow_unsafe_custody,
        max_retry_subsets=args.max_retry_subsets,
        peer_only=args.peer_only,
        health_address=args.health_address,
        notify=args.notify or (),
    )


async def _serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    # Settings are made here, after telemetry is configured, so that a bad OTEL_* setting and
    # a missing option are reported in the same order as for syncd.
    settings = settings_from(args)
    if settings.ca_file:  # checked before anything is read or asked (a custodian, Vault)
        try:
            ca_context(what=f"--ca-file {settings.ca_file}", cafile=settings.ca_file)
        except TLSMaterialError as exc:
            raise CommandError(str(exc), code=USAGE) from None
    from unsealer import service  # noqa: PLC0415  (the service's imports are for run only)

    await service.run(settings, stop)


def _run(args: argparse.Namespace) -> int:
    try:
        serve(
            prog=PROG,
            version=VERSION,
            log_format=args.log_format,
            log_level=args.log_level,
            main=functools.partial(_serve, args),
        )
    except asyncio.CancelledError:
        return report("run", "stopped by a second signal before a clean shutdown", code=130)
    except Exception as exc:
        code = failure_code(exc)
        if code is None:
            raise
        return report("run", failure_message(exc), code=code)
    return OK


def main(argv: Sequence[str] | None = None) -> None:
    disable_core_dumps()  # every command may hold shares or a root token in memory
    args: argparse.Namespace = build_parser().parse_args(argv)
    raise SystemExit(args.entry(args))
