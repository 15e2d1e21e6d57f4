"""``unsealer init``: initialise a new Vault straight into split custody.

``sys/init`` is the one step that cannot be undone: its shares and root token exist nowhere
else. So every check that can fail is made before it, and the command refuses to start when:

- the root token would have nowhere to go, or more than one place: exactly one of
  ``--root-token-custodian`` (a custodian that can hold it, answering, holding no other token
  unless ``--replace``), ``--root-token-file`` (created 0600 and empty before ``sys/init``) or
  an explicit ``--print-root-token`` (see :mod:`.root_token`);
- ``--pgp-key`` is given (see :data:`PGP_REFUSAL`);
- the custody config gives no layout where the invariant holds for these shares/threshold;
- a writable custodian already holds shares (unless ``--replace``) or cannot be read;
- the fallback directory is not writable;
- Vault is already initialised, or the pod to initialise does not answer.

After ``sys/init`` the keys become :class:`~unsealer.shares.Share` values at once, the shares
are distributed, and the root token is stored (or written, or printed once); what a custodian
cannot take lands in a 0600 fallback file the error names (exit 1, nothing lost), and ``unsealer
custody import --fallback-file`` stores it once the custodian works. Should distribution fail in
an unforeseen way, :func:`~unsealer.commands.secret_io.rescue` saves every share before the
command ends. Shares and the token are wiped when done.

The first pod by name (``vault-0`` with the Helm chart: the one raft peers join) is initialised,
unless ``--address`` names another server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from plumbing.lifecycle import DeferredSignals
from plumbing.options import OptionParser
from unsealer.commands import options
from unsealer.commands.custody_access import build, load_custody, placement_lines
from unsealer.commands.root_token import (
    Placed,
    check_destination,
    check_store_empty,
    open_store,
    place_root_token,
)
from unsealer.commands.runner import (
    FAILED,
    OK,
    Clients,
    CommandError,
    execute,
    report,
    usage_error,
)
from unsealer.commands.secret_io import TokenFile, check_fallback_dir, rescue, rescue_root_token
from unsealer.commands.status import PodStatus, probe
from unsealer.commands.targets import find_targets
from unsealer.custody import (
    Custodian,
    CustodyConfig,
    CustodyError,
    Distribution,
    DistributionError,
    distribute,
)
from unsealer.custody.custodian import StoredCustodian, wipe_all_entries
from unsealer.custody.distribution import plan
from unsealer.custody.invariant import require_configured
from unsealer.custody.root_token import RootTokenStore
from unsealer.init_output import RootToken
from unsealer.shares import Share, wipe_all
from unsealer.vault_sys import InitResult, VaultNode

log = structlog.get_logger("unsealer")

NAME = "init"

#: ``sys/init`` may take a while on raft storage; it must not time out with the keys in flight.
INIT_TIMEOUT_SECONDS = 120.0

PGP_REFUSAL = (
    "--pgp-key is refused: with PGP keys Vault returns every share encrypted to a person's "
    "key, so the custodians would hold ciphertext that only that person can decrypt and the "
    "unsealer could never unseal unattended. For encryption at rest use age in the custody "
    "config (encryptedFor / identityFrom); for PGP-held shares use `vault operator init "
    "-pgp-keys` without the unsealer"
)

EPILOG = """\
The root token goes to exactly one place: --root-token-custodian (a custodian with rootTokenKey
or rootTokenFile; should it fail, to --root-token-file if given, else to a 0600 file in
--fallback-dir), --root-token-file (a new 0600 file) or, with --print-root-token, stdout once;
with none, init refuses to start, so the token is never lost. The shares are never printed:
they go to the custodians, and whatever a custodian cannot store to a 0600 file in
--fallback-dir that the error names; `unsealer custody import --fallback-file FILE` stores it
there once the custodian works.

exit status:
  0  Vault initialised, every share and the root token where they belong
  1  Vault initialised but some shares (or the root token) are in the fallback file named on
     stderr; or Vault was already initialised, or did not answer (nothing done)
  2  refused before initialising: options, custody config, token file, fallback directory
"""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser: OptionParser = commands.add_parser(
        "init",
        help="initialise an uninitialised Vault and store its shares in split custody",
        description="Initialise Vault (sys/init) and store the unseal shares at the "
        "custodians of the custody config, so that no custodian alone holds the threshold.",
        epilog=EPILOG,
        env_prefix="UNSEALER_",
    )
    options.add_custody_config(parser)
    options.add_kubernetes(parser)
    options.add_vault_target(parser)
    parser.option(
        "--shares", type=options.count, default=None, metavar="N",
        help="how many unseal shares Vault makes (default: 'shares' of the custody config)",
    )
    parser.option(
        "--threshold", type=options.count, default=None, metavar="T",
        help="how many shares unseal (default: 'threshold' of the custody config)",
    )
    parser.option(
        "--pgp-key", action="append", default=None, flag_only=True, metavar="FILE",
        help="refused: PGP-encrypted shares cannot be submitted unattended (see the error)",
    )
    options.add_distribution(parser)
    options.add_root_token_output(parser)
    options.add_command_logging(parser)
    parser.set_defaults(entry=main)


def main(args: argparse.Namespace) -> int:
    return execute(args, name=NAME, handler=initialize)


async def initialize(args: argparse.Namespace, clients: Clients) -> int:
    if args.pgp_key:
        usage_error(PGP_REFUSAL)
    address = args.address or args.address_template
    if not address.startswith("https://") and not args.allow_plain_http:
        # Vault's answer to sys/init holds every share and the root token: over plain http,
        # whoever answers at that address, or reads the network, gets all of them.
        option = "--address" if args.address else "--address-template"
        usage_error(
            f"{option} {address}: plain http proves nothing about who answers, and Vault's "
            "answer to sys/init carries every share and the root token in the clear; use https "
            "(see README, unsealer TLS) or pass --allow-plain-http. Vault was not initialised"
        )
    config = await asyncio.to_thread(load_custody, args, require_files=False)
    token_custodian = check_destination(args, config, required=True, doing="initialise")
    count, threshold = seal_shape(args, config)
    require_configured(config, threshold=threshold, allow_unsafe=args.allow_unsafe_custody)
    try:
        plan(count, threshold=threshold, config=config, allow_unsafe=args.allow_unsafe_custody)
    except ValueError as exc:
        usage_error(
            f"no safe way to place {count} shares with threshold {threshold} on the custodians "
            f"of {config.source}: {exc}. Vault was not initialised"
        )
    fallback_dir = check_fallback_dir(args.fallback_dir)
    custodians = await build(config, clients)
    await check_custodians_empty(config, custodians, replace=args.replace)
    store: RootTokenStore | None = None
    if token_custodian is not None:
        store = await open_store(token_custodian, clients)
        await check_store_empty(store, replace=args.replace)
    target = await uninitialised_target(args, clients)

    token_file = TokenFile.create(Path(args.root_token_file)) if args.root_token_file else None
    # Over https, the server that proved the pod's name when probed (None: plain http).
    node = clients.vault(target.address, timeout=INIT_TIMEOUT_SECONDS,
                         server_name=target.server_name)
    # SIGTERM, SIGINT, SIGHUP wait from before sys/init is sent until every share and the
    # token are stored or rescued: see DeferredSignals and hand_over.
    with DeferredSignals() as deferred:
        code = await _initialize(
            node, count=count, threshold=threshold, config=config, custodians=custodians,
            fallback_dir=fallback_dir, store=store, token_file=token_file, target=target,
            deferred=deferred, args=args,
        )
    if deferred.received is not None:
        return report(NAME, f"{deferred.received.name} received during init and deferred "
                      "until every share and the root token were stored", code=FAILED)
    return code


async def _initialize(
    node: VaultNode,
    *,
    count: int,
    threshold: int,
    config: CustodyConfig,
    custodians: dict[str, Custodian],
    fallback_dir: Path,
    store: RootTokenStore | None,
    token_file: TokenFile | None,
    target: PodStatus,
    deferred: DeferredSignals,
    args: argparse.Namespace,
) -> int:
    try:
        result = await node.initialize(shares=count, threshold=threshold)
    except BaseException:
        if token_file is not None:
            token_file.abandon()
        raise
    # From here on the shares and the token exist only in this process: custody first, words
    # after (a closed stdout must not cost a share). The shares go first: a lost root token can
    # be made again from them (vault operator generate-root), never the reverse.
    received = time.monotonic()
    token = RootToken(result.root_token.encode("ascii", "replace"), origin="sys/init")
    placed = Placed()
    failing = True
    try:
        try:
            distribution = await hand_over(
                result, threshold=threshold, config=config, custodians=custodians,
                fallback_dir=fallback_dir, args=args, interrupt=deferred,
            )
        except Exception:
            placed = await keep_root_token(token, store, token_file, fallback_dir, args)
            raise
        except BaseException:  # cancelled: no awaiting; save the token at once
            placed = keep_root_token_now(token, store, token_file, fallback_dir)
            raise
        finally:
            # The window only SIGKILL or power loss can exploit: shares in memory only.
            log.info("init.shares.durable",
                     seconds=round(time.monotonic() - received, 4))
        placed = await keep_root_token(token, store, token_file, fallback_dir, args)
        failing = False
    finally:
        log.info("vault.initialized", pod=target.pod, share_count=count, threshold=threshold)
        print(f"Vault initialised at {target.pod} ({target.address}): {count} shares, "
              f"threshold {threshold}")
        if placed.note:
            print(placed.note)
        if args.print_root_token:
            print(f"Initial Root Token: {token.reveal()}", flush=True)
        if failing and placed.problem is not None:  # the shares' error line follows
            print(f"unsealer init: error: {placed.problem}", file=sys.stderr, flush=True)
        token.wipe()
    print("\n".join(placement_lines(distribution, count=count, threshold=threshold)))
    missing = [f"{key}: {value}" for key, value, configured in (
        ("threshold", threshold, config.threshold), ("shares", count, config.shares))
        if configured is None]
    if missing:  # the record unsealer run and verify check Vault and custody against
        print(f"Record the seal in {config.source}: {', '.join(missing)} (unsealer run checks "
              "custody, and Vault's seal-status, against it)")
    print("Vault is still sealed: `unsealer run` unseals it from the custodians.")
    if placed.problem is not None:
        raise CommandError(f"every share is at its custodians, but {placed.problem}")
    return OK


async def keep_root_token(
    token: RootToken,
    store: RootTokenStore | None,
    token_file: TokenFile | None,
    fallback_dir: Path,
    args: argparse.Namespace,
) -> Placed:
    """The root token to its one destination (``--print-root-token`` prints it later)."""
    if store is not None:
        return await place_root_token(
            token, store=store, token_file=token_file, fallback_dir=fallback_dir,
            replace=args.replace,
        )
    return Placed(note=save_root_token(token, token_file))


def keep_root_token_now(
    token: RootToken,
    store: RootTokenStore | None,
    token_file: TokenFile | None,
    fallback_dir: Path,
) -> Placed:
    """Without awaiting (the command is being cancelled): the token file, else a rescue file."""
    if token_file is not None:
        return Placed(note=save_root_token(token, token_file))
    if store is not None:
        where = rescue_root_token(
            token, custodian=store.custodian, where=store.describe(), directory=fallback_dir
        )
        return Placed(problem=f"interrupted before the root token was stored: {where}")
    return Placed()


def seal_shape(args: argparse.Namespace, config: CustodyConfig) -> tuple[int, int]:
    """(shares, threshold) from the flags, else the custody config; the two must agree."""
    for flag, given, configured in (
        ("--shares", args.shares, config.shares),
        ("--threshold", args.threshold, config.threshold),
    ):
        if given is not None and configured is not None and given != configured:
            usage_error(
                f"{flag} {given} differs from the custody config {config.source} "
                f"({configured}); unsealer run checks custody against the config"
            )
    count = args.shares if args.shares is not None else config.shares
    threshold = args.threshold if args.threshold is not None else config.threshold
    if count is None or threshold is None:
        usage_error(
            "--shares and --threshold are required (or 'shares' and 'threshold' in the "
            "custody config)"
        )
    problem = options.parse_threshold_pair(count, threshold)
    if problem:
        usage_error(problem)
    return count, threshold


async def check_custodians_empty(
    config: CustodyConfig, custodians: dict[str, Custodian], *, replace: bool
) -> None:
    """Refuse before ``sys/init`` when a writable custodian holds shares or cannot be read.

    Either would send the new shares to the fallback file instead of custody. With
    ``--replace`` a custodian that holds shares is overwritten; one that cannot be read is
    refused either way.
    """
    for spec in config.share_custodians:
        custodian = custodians[spec.name]
        # Only the custodians distribution writes to: writable, with a 'shares' count.
        if not spec.writable or not spec.shares or not isinstance(custodian, StoredCustodian):
            continue
        try:
            entries = await custodian.backend.read_entries(missing_ok=True)
        except CustodyError as exc:
            usage_error(f"{exc}. Vault was not initialised")
        held = len(entries)
        wipe_all_entries(entries)
        if held and not replace:
            usage_error(
                f"custodian {spec.name!r} already holds {held} share entries (of another "
                "Vault?). Clear it or pass --replace to overwrite. Vault was not initialised"
            )


async def uninitialised_target(args: argparse.Namespace, clients: Clients) -> PodStatus:
    """The server to initialise: ``--address`` or the first pod by name, checked first."""
    targets = await find_targets(args, clients)
    rows = await asyncio.gather(*(probe(target, clients) for target in targets))
    for row in rows:
        if row.reachable and row.initialized:
            raise CommandError(f"Vault is already initialised ({row.pod} says so); nothing done")
    first = rows[0]
    if not first.reachable:
        raise CommandError(
            f"{first.pod} did not answer ({first.error}); nothing done. Pass --address to "
            "initialise another server"
        )
    return first


async def _unless_interrupted(work: asyncio.Future[Any], interrupt: DeferredSignals) -> None:
    """Wait for ``work``; on a deferred signal cancel it (awaited) and raise Interrupted."""
    signalled = asyncio.ensure_future(interrupt.arrived.wait())
    try:
        await asyncio.wait({work, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if not work.done():  # signalled first: what is not stored yet is rescued by the caller
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise Interrupted(interrupt.received.name if interrupt.received else "a signal")


def save_root_token(token: RootToken, token_file: TokenFile | None) -> str:
    """Write the root token to its file; the line to print about it ("" without a file)."""
    if token_file is None:
        return ""
    try:
        token_file.write(token.reveal())
    except OSError as exc:
        print(f"unsealer init: error: the root token could not be written to "
              f"{token_file.path} ({exc.strerror}); make a new one with `vault operator "
              "generate-root` and the unseal keys", file=sys.stderr)
        return ""
    return f"Root token written to {token_file.path} (mode 0600)"


class Interrupted(Exception):
    """A deferred signal arrived while the shares were being stored: rescue them now."""


async def hand_over(
    result: InitResult,
    *,
    threshold: int,
    config: CustodyConfig,
    custodians: dict[str, Custodian],
    fallback_dir: Path,
    args: argparse.Namespace,
    interrupt: DeferredSignals | None = None,
) -> Distribution:
    """Distribute the new shares; never return or raise with a share only in memory.

    A signal deferred by ``interrupt`` (before or during distribution) stops waiting on the
    custodians: every share goes to the rescue file at once, named in the error.
    """
    keys = result.keys_hex
    shares: list[Share] = []
    try:
        for number, key in enumerate(keys, start=1):
            shares.append(Share.parse(key, origin=f"unseal key {number}"))
        work = asyncio.ensure_future(distribute(
            shares,
            threshold=threshold,
            config=config,
            custodians=custodians,
            fallback_dir=fallback_dir,
            replace=args.replace,
            allow_unsafe=args.allow_unsafe_custody,
        ))
        if interrupt is not None:
            await _unless_interrupted(work, interrupt)
        distribution = await work
    except DistributionError as exc:
        if exc.fallback is not None:
            raise  # its message names the file that holds what is missing
        where = rescue(keys, threshold=threshold, directory=fallback_dir)
        raise CommandError(f"{exc}. Since then, {where}") from None
    except BaseException as exc:  # a bug, Ctrl-C: save the shares first, whatever happened
        where = rescue(keys, threshold=threshold, directory=fallback_dir)
        print(f"unsealer init: {where}", file=sys.stderr, flush=True)
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, Interrupted):
            raise CommandError(f"{exc} while the shares were being stored; {where}: store them "
                               f"with `unsealer custody import < FILE` (custodians that "
                               "already hold theirs keep them), then delete the file") from None
        raise CommandError(f"storing the shares failed ({type(exc).__name__}); {where}") from None
    finally:
        wipe_all(shares)
    return distribution
