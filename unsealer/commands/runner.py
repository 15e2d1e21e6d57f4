"""Running one command: logging set up, connections opened on demand, failures as one line.

A person runs these commands at a terminal, often at a bad moment (the cluster is down). What
they need from a failure is one sentence saying what went wrong and where, not a traceback; what
a script needs is the exit code. :func:`execute` turns every failure the unsealer expects
(config, custody, Vault, Kubernetes, network) into exactly that. The messages of those
exceptions are built by this project from its own words (see :class:`~unsealer.custody.
CustodyError`, :class:`~unsealer.vault_sys.VaultSysError`), never from share material. An
unexpected exception prints only its type: its message was not written with secrecy in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import aiohttp
import structlog

from plumbing.kube import Kube, KubeError, connect
from plumbing.kubeconfig import KubeConfigError
from plumbing.telemetry import TelemetryError, configure
from plumbing.tls import TLSMaterialError, ca_context
from plumbing.version import VERSION
from unsealer.custody import (
    CustodyConfigError,
    CustodyError,
    DistributionError,
    InvariantError,
)
from unsealer.init_output import InitOutputError
from unsealer.vault_sys import VaultNode, VaultSysError

PROG = "unsealer"

OK = 0
FAILED = 1
USAGE = 2


class CommandError(Exception):
    """An expected failure: ``message`` is the one line to print, ``code`` the exit code."""

    def __init__(self, message: str, *, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def usage_error(message: str) -> NoReturn:
    """The command cannot start: bad options, config or input (exit 2)."""
    raise CommandError(message, code=USAGE)


class Clients:
    """The connections a command may need, each opened on first use and closed at the end.

    A command that needs no Kubernetes (``init --address`` with file custodians) never loads a
    kubeconfig, so it works on a laptop without one.
    """

    def __init__(
        self, *, kubeconfig: str | None, ca_file: str | None = None, vault_timeout: float = 10.0
    ) -> None:
        self._kubeconfig = kubeconfig
        self._ca_file = ca_file
        self._vault_timeout = vault_timeout
        self._kube: Kube | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool | None = None
        if ca_file is not None:
            self._ssl_context()  # a broken --ca-file stops the command before it reads anything

    async def kube(self) -> Kube:
        if self._kube is None:
            where = f" from {self._kubeconfig}" if self._kubeconfig else ""
            try:
                self._kube = await connect(kubeconfig=self._kubeconfig)
            except (OSError, ValueError, TypeError, KeyError) as exc:  # KubeConfigError too
                usage_error(f"cannot load Kubernetes credentials{where}: {_reason(exc)}")
        return self._kube

    def vault(
        self, address: str, *, timeout: float | None = None, server_name: str | None = None
    ) -> VaultNode:
        """A node at ``address``; over https its certificate must carry ``server_name``."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return VaultNode(
            session=self._http,
            address=address,
            server_name=server_name,
            ssl_context=self._ssl_context(),
            request_seconds=timeout or self._vault_timeout,
        )

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if self._ssl is None:
            if self._ca_file is None:
                self._ssl = True
            else:
                try:
                    self._ssl = ca_context(what=f"--ca-file {self._ca_file}",
                                           cafile=self._ca_file)
                except TLSMaterialError as exc:
                    usage_error(str(exc))
        return self._ssl

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._kube is not None:
            await self._kube.close()


Handler = Callable[[argparse.Namespace, Clients], Awaitable[int]]


def execute(
    args: argparse.Namespace,
    *,
    name: str,
    handler: Handler,
    prepare: Callable[[], None] | None = None,
) -> int:
    """Run ``handler`` with logging configured; the exit code, every expected failure included.

    ``prepare`` runs first, outside the event loop: blocking work such as reading a paste from
    a terminal, which Ctrl-C must be able to interrupt.
    """
    try:
        telemetry = configure(
            service_name=PROG,
            service_version=VERSION,
            log_format="console" if args.log_format == "console" else "json",
            log_level=args.log_level,
        )
    except TelemetryError as exc:
        return report(name, str(exc), code=USAGE)
    try:
        if prepare is not None:
            prepare()
        return asyncio.run(_with_clients(args, handler))
    except KeyboardInterrupt:
        return report(name, "interrupted", code=130)
    except BaseException as exc:
        code = failure_code(exc)
        if code is None:
            raise
        return report(name, failure_message(exc), code=code)
    finally:
        telemetry.shutdown()


async def _with_clients(args: argparse.Namespace, handler: Handler) -> int:
    clients = Clients(
        kubeconfig=getattr(args, "kubeconfig", None),
        ca_file=getattr(args, "ca_file", None),
        vault_timeout=getattr(args, "vault_timeout", 10.0),
    )
    try:
        return await handler(args, clients)
    finally:
        await clients.close()


def failure_code(exc: BaseException) -> int | None:
    """The exit code of a failure: 2 for unusable input, 1 for the rest; ``None`` for what is
    not an ``Exception`` (``SystemExit``, cancellation), which passes through."""
    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, CustodyConfigError | InvariantError | InitOutputError | KubeConfigError):
        return USAGE  # unusable input, unsafe custody included: refused, nothing done
    if isinstance(exc, Exception):
        return FAILED  # expected or not: one line either way (see failure_message)
    return None


def failure_message(exc: BaseException) -> str:
    if isinstance(exc, KubeError):
        return f"Kubernetes API: {exc}"
    if isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError):
        return f"network error: {_reason(exc)}"
    if isinstance(
        exc,
        CommandError | CustodyConfigError | CustodyError | DistributionError | InvariantError
        | InitOutputError | VaultSysError | KubeConfigError,
    ):
        return str(exc)
    if isinstance(exc, OSError):  # the system's words, about our own files and addresses
        return _reason(exc)
    # A bug. Its message was not written to be shown (it might quote anything): the type only,
    # and the traceback for whoever asks for debug logs.
    structlog.get_logger(PROG).debug("unexpected_error", exc_info=exc)
    return f"unexpected {type(exc).__name__} (run with --log-level debug for the traceback)"


def report(name: str, message: str, *, code: int) -> int:
    """Print the one line of a failure on stderr; returns ``code``."""
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{PROG} {name}: error: {line}", file=sys.stderr, flush=True)
    return code


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if not exc.filename else f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
