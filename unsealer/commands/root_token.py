"""Where the root token goes, for ``init`` and ``custody import``: one destination, never lost.

Three destinations, exactly one chosen (``init`` refuses to start without one; ``import``
drops the token with a note when none is given, since the person still has the output):

- ``--root-token-custodian NAME``: stored at that custodian, apart from its shares
  (:mod:`unsealer.custody.root_token`). ``--root-token-file`` may be given too, as the place
  the token goes should the custodian fail; otherwise a 0600 rescue file in ``--fallback-dir``
  (:func:`~.secret_io.rescue_root_token`), which ``custody import --fallback-file`` reads;
- ``--root-token-file PATH``: a new 0600 file;
- ``--print-root-token``: stdout, once.

Every refusal happens before ``sys/init`` (or before the paste is read): an unknown custodian,
one that cannot hold a token (env, peer, or no ``rootTokenKey``/``rootTokenFile``), two
destinations.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from unsealer.commands.runner import Clients, usage_error
from unsealer.commands.secret_io import TokenFile, rescue_root_token
from unsealer.custody import CustodyConfig, CustodyError
from unsealer.custody.config import CustodianConfig, KubeSecretConfig
from unsealer.custody.root_token import (
    RootTokenStore,
    root_token_problem,
    root_token_store,
    store_with_retries,
)
from unsealer.init_output import RootToken


def check_destination(
    args: argparse.Namespace, config: CustodyConfig, *, required: bool, doing: str
) -> CustodianConfig | None:
    """Refuse a choice of destinations that is not exactly one (or none, unless ``required``);
    the custodian spec of ``--root-token-custodian``, if given."""
    custodian: str | None = args.root_token_custodian
    if custodian is not None:
        if args.print_root_token:
            usage_error("--root-token-custodian and --print-root-token exclude each other: "
                        "choose one destination for the root token")
        try:
            spec = config.custodian(custodian)
        except KeyError:
            usage_error(f"--root-token-custodian {custodian}: the custody config "
                        f"{config.source} has no custodian of that name")
        problem = root_token_problem(spec)
        if problem is not None:
            usage_error(f"--root-token-custodian {custodian}: {problem}")
        return spec
    if args.root_token_file and args.print_root_token:
        usage_error("--root-token-file and --print-root-token exclude each other: choose one "
                    "destination for the root token")
    if required and not args.root_token_file and not args.print_root_token:
        usage_error(
            f"refusing to {doing}: the root token would be lost. Pass --root-token-custodian "
            "NAME, --root-token-file PATH (a new 0600 file) or --print-root-token"
        )
    return None


async def open_store(spec: CustodianConfig, clients: Clients) -> RootTokenStore:
    kube = await clients.kube() if isinstance(spec, KubeSecretConfig) else None
    return root_token_store(spec, kube=kube)


@dataclass
class Placed:
    """What became of the root token: the line for stdout, or the problem for stderr."""

    note: str = ""
    problem: str | None = None


async def place_root_token(
    token: RootToken,
    *,
    store: RootTokenStore,
    token_file: TokenFile | None,
    fallback_dir: Path,
    replace: bool,
    rescue: bool = True,
) -> Placed:
    """Store ``token`` at its custodian; on failure, the token file, else the rescue file.

    Never raises an ``Exception`` with the token only in memory. ``rescue=False`` (``custody
    import``: the person still has the output) reports the failure without a rescue file.
    """
    try:
        stored = await store_with_retries(store, token, replace=replace)
    except CustodyError as exc:
        return Placed(problem=_fall_back(token, exc, store=store, token_file=token_file,
                                         fallback_dir=fallback_dir, rescue=rescue))
    except BaseException as exc:  # Ctrl-C, a bug: save the token first (blocking, no await)
        where = _fall_back(token, None, store=store, token_file=token_file,
                           fallback_dir=fallback_dir, rescue=True)
        print(f"unsealer: {where}", file=sys.stderr, flush=True)
        if not isinstance(exc, Exception):
            raise
        return Placed(problem=f"storing the root token failed ({type(exc).__name__}); {where}")
    if token_file is not None:
        token_file.abandon()  # not needed: the custodian has it
    already = " (it already held it)" if not stored else ""
    return Placed(
        note=f"Root token stored at custodian {store.custodian!r} ({store.describe()}){already}"
    )


def _fall_back(
    token: RootToken,
    exc: CustodyError | None,
    *,
    store: RootTokenStore,
    token_file: TokenFile | None,
    fallback_dir: Path,
    rescue: bool,
) -> str:
    failed = (
        f"the root token could not be stored at custodian {store.custodian!r}"
        + (f" ({exc})" if exc is not None else "")
    )
    if token_file is not None:
        try:
            token_file.write(token.reveal())
            return f"{failed}; it was written to {token_file.path} (mode 0600) instead"
        except (OSError, RuntimeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "already used"
            failed += f"; nor to {token_file.path} ({reason})"
    if not rescue:
        return f"{failed}; it is still in the output you imported"
    where = rescue_root_token(
        token, custodian=store.custodian, where=store.describe(), directory=fallback_dir
    )
    return (f"{failed}; {where}: store it with `unsealer custody import --fallback-file` once "
            "the custodian works, then delete the file")


async def check_store_empty(store: RootTokenStore, *, replace: bool) -> None:
    """Before ``sys/init``: the custodian answers and holds no (other Vault's) root token."""
    try:
        held = await store.holds()
    except CustodyError as exc:
        usage_error(f"{exc}. Vault was not initialised")
    if held and not replace:
        usage_error(
            f"custodian {store.custodian!r} already holds a root token ({store.describe()}; of "
            "another Vault?). Clear it or pass --replace to overwrite. Vault was not initialised"
        )
