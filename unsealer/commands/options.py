"""The option types and option groups the unsealer's commands share.

Each group is declared once here so that ``run``, ``status``, ``custody verify`` and ``init``
spell the same thing the same way, and so share one environment variable: ``UNSEALER_NAMESPACE``
set in a shell applies to every command, as it does to the Deployment.

Option types raise :class:`argparse.ArgumentTypeError` with a message that does not repeat the
value when the value may be secret (the fingerprint key): :class:`~plumbing.options.OptionParser`
prints that message as it is, on one line.
"""

from __future__ import annotations

import argparse
import re

from plumbing.options import OptionParser, positive_int
from plumbing.telemetry import LOG_FORMATS, LOG_LEVELS
from unsealer.discovery import (
    DEFAULT_ADDRESS,
    DEFAULT_SELECTOR,
    DEFAULT_SERVER_NAME,
    DEFAULT_STATEFULSET,
)
from unsealer.shares import FingerprintKey

_DURATION = re.compile(r"([0-9]+(\.[0-9]+)?(s|m|h))+")
_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    """``30s``, ``5m``, ``1h30m`` in seconds, greater than 0 (argparse ``type``)."""
    if not _DURATION.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit s, m or h, e.g. 30s or 5m"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _TERM.findall(text))
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be longer than 0s")
    return seconds


def fingerprint_key(text: str) -> bytes:
    """Hex of at least 16 bytes (argparse ``type``). The message never repeats the value."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("not hex (give at least 32 hex digits)") from None
    if len(key) < FingerprintKey.MIN_BYTES:
        raise argparse.ArgumentTypeError(
            f"{len(key)} bytes is too short: at least {FingerprintKey.MIN_BYTES} bytes "
            f"({2 * FingerprintKey.MIN_BYTES} hex digits)"
        )
    return key


def address_template(text: str) -> str:
    """An http(s) URL template with ``{ip}``, ``{pod}``, ``{namespace}`` (argparse ``type``)."""
    try:
        example = text.format(ip="10.0.0.1", pod="vault-0", namespace="vault")
    except (KeyError, IndexError, ValueError) as exc:
        raise argparse.ArgumentTypeError(
            f"invalid template {text!r}: only {{ip}}, {{pod}} and {{namespace}} may be used "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not example.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} must start with http:// or https://")
    return text


def server_name_template(text: str) -> str:
    """A DNS name template with ``{pod}``, ``{service}``, ``{namespace}`` (argparse ``type``)."""
    try:
        example = text.format(pod="vault-0", service="vault-internal", namespace="vault")
    except (KeyError, IndexError, ValueError) as exc:
        raise argparse.ArgumentTypeError(
            f"invalid template {text!r}: only {{pod}}, {{service}} and {{namespace}} may be used"
            f" ({type(exc).__name__}: {exc})"
        ) from None
    if not example or "/" in example or ":" in example:
        raise argparse.ArgumentTypeError(f"{text!r} must be a DNS name, not a URL")
    return text


def address(text: str) -> str:
    """One Vault server's base URL (argparse ``type``)."""
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} must start with http:// or https://")
    return text.rstrip("/")


def count(text: str) -> int:
    """A share count or threshold: 1 to 255, as Vault allows (argparse ``type``)."""
    number = positive_int(text)
    if number > 255:
        raise argparse.ArgumentTypeError(f"must be at most 255, got {text!r}")
    return number


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text!r}")
    return value


# --- option groups ------------------------------------------------------------------------------


def add_command_logging(parser: OptionParser) -> None:
    """Logging for a command a person runs: warnings and up, readable, on stderr.

    Same flags and variables as ``run``'s, with defaults for a terminal rather than a log
    collector; stdout carries the command's result.
    """
    parser.option(
        "--log-level", default="warning", choices=LOG_LEVELS, help="log level (logs go to stderr)"
    )
    parser.option("--log-format", default="console", choices=LOG_FORMATS, help="log line format")


def add_kubernetes(parser: OptionParser) -> None:
    parser.option(
        "--kubeconfig", default=None, metavar="PATH",
        help="kubeconfig file (default: in-cluster service account, else ~/.kube/config)",
    )
    parser.option(
        "--namespace", default="vault", metavar="NAME",
        help="Vault's namespace: where its pods are, and where no custody Secret may be",
    )


def add_vault_pods(parser: OptionParser) -> None:
    """How to find the Vault pods and talk to each one (as ``run`` does)."""
    parser.option(
        "--selector", default=DEFAULT_SELECTOR, metavar="SELECTOR",
        help="label selector of the Vault server pods",
    )
    parser.option(
        "--address-template", type=address_template, default=DEFAULT_ADDRESS, metavar="TEMPLATE",
        help="a pod's Vault address; {ip}, {pod} and {namespace} are filled in",
    )
    parser.option(
        "--ca-file", default=None, metavar="PATH",
        help="CA bundle for https Vault addresses (default: system's)",
    )
    parser.option(
        "--statefulset", default=DEFAULT_STATEFULSET, metavar="NAME",
        help="the StatefulSet whose pods are Vault: other pods with Vault's labels are "
        "reported and never spoken to",
    )
    parser.option(
        "--server-name", type=server_name_template, default=DEFAULT_SERVER_NAME,
        metavar="TEMPLATE",
        help="the DNS name each pod's certificate must carry over https; {pod}, {service} "
        "(the StatefulSet's serviceName) and {namespace} are filled in",
    )
    parser.switch(
        "--allow-plain-http",
        help="allow an http:// Vault address (the Helm chart's default): Vault's identity is "
        "then not verified, and what Vault is sent or answers (shares; at init, every share "
        "and the root token) crosses the network in the clear; announced wherever it is used",
    )


def add_vault_target(parser: OptionParser) -> None:
    """``add_vault_pods`` plus a direct address and a request timeout, for one-shot commands."""
    add_vault_pods(parser)
    parser.option(
        "--address", type=address, default=None, metavar="URL",
        help="talk to this one Vault server instead of finding the pods through Kubernetes",
    )
    parser.option(
        "--vault-timeout", type=duration, default="10s", metavar="DURATION",
        help="timeout of each Vault request",
    )


def add_custody_config(parser: OptionParser) -> None:
    parser.option(
        "--custody-config", default=None, metavar="PATH",
        help="the custody config file (custodians and what they hold); required",
    )


def add_unsafe_custody(parser: OptionParser) -> None:
    parser.switch(
        "--allow-unsafe-custody",
        help="DEVELOPMENT ONLY: go on even when one custodian (or one plus the holder of its "
        "key) would hold the threshold of shares, which defeats split custody",
    )


def add_distribution(parser: OptionParser) -> None:
    """Where shares go when a custodian cannot take them, and whether to overwrite."""
    parser.option(
        "--fallback-dir", default=".", metavar="DIR",
        help="directory of the 0600 file that receives any share a custodian could not store "
        "(nothing is ever dropped)",
    )
    # Flag only: overwriting the shares a custodian holds destroys them, so it must be asked
    # for on the command line each time, never by a variable left in a shell profile.
    parser.add_argument(
        "--replace", action="store_true",
        help="overwrite custodians that already hold other shares or another root token "
        "(they are lost); flag only",
    )
    add_unsafe_custody(parser)


def add_root_token_output(parser: OptionParser) -> None:
    """Where the root token goes: one of these (see :mod:`unsealer.commands.root_token`)."""
    parser.option(
        "--root-token-custodian", default=None, metavar="NAME",
        help="store the initial root token at this custodian of the custody config, apart "
        "from its shares (a kubernetesSecret with rootTokenKey, or a file with rootTokenFile)",
    )
    parser.option(
        "--root-token-file", default=None, metavar="PATH",
        help="write the initial root token to this new file, mode 0600 (it must not exist); "
        "with --root-token-custodian, only if that custodian cannot store it",
    )
    # Flag only: printing a root token must be asked for explicitly, run by run.
    parser.add_argument(
        "--print-root-token", action="store_true",
        help="print the initial root token on stdout, once; flag only",
    )


def parse_threshold_pair(shares: int | None, threshold: int | None) -> str | None:
    """Why ``threshold`` of ``shares`` is not a seal Vault accepts, or ``None``."""
    if shares is None or threshold is None:
        return None
    if threshold > shares:
        return f"threshold {threshold} cannot be larger than shares {shares}"
    if shares > 1 and threshold == 1:
        return "threshold must be greater than one for multiple shares (Vault's rule)"
    return None
