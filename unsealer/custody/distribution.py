"""Hand freshly made shares to the custodians (init, import), so that nothing is ever lost.

The shares from ``vault operator init`` exist nowhere else: if a custodian write fails and the
process ends, the Vault can never be unsealed again. So distribution is careful in this order:

1. Plan: give each writable custodian its configured number of shares (``shares`` in the
   custody config), laid out cyclically (with three custodians of two shares each and three
   shares: AB, CA, BC), trying custodian orders until the invariant holds *by place* (two
   custodians in one namespace may hold the same share, never together the threshold) and
   every share is placed at least once. No plan, no writes.
2. Store each custodian's shares, retrying failures with backoff a bounded number of times. A
   custodian that already holds other shares is not retried (:class:`CustodyConflict`).
3. Whatever could not be delivered (or everything, when there is no plan) is written to a new
   0600 file, whose path is named in the :class:`DistributionError`. Its format is the file
   custodian's, with comments naming where each share was meant to go
   (``# for kube-b (Secret ...): unseal key 3`` above the share), so that
   ``unsealer custody import --fallback-file`` reads it back (:func:`parse_fallback`) and
   :func:`restore` stores each share at the custodian named for it, once that custodian works.
   ``init`` writes a root token it could not store at its custodian in the same format
   (``# for kube-a (...): root token``).

The caller's ``Share`` objects are left alone (the caller wipes them) so that even when the
fallback file cannot be written, the shares are still in the caller's hands.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from unsealer.custody.config import CustodianConfig, CustodyConfig
from unsealer.custody.custodian import Custodian, CustodyConflict, CustodyError
from unsealer.custody.file import write_private_file
from unsealer.custody.invariant import Holding, check_invariant
from unsealer.init_output import RootToken
from unsealer.shares import Share, ShareError, wipe_all, zero

log = structlog.get_logger("unsealer.custody")

_MAX_ORDERS = 5040  # 7! custodian orders; more custodians than that are tried in part


class DistributionError(Exception):
    """Shares could not all be stored where planned; ``fallback`` is where they are instead."""

    def __init__(self, message: str, *, fallback: Path | None) -> None:
        super().__init__(message)
        self.fallback = fallback


@dataclass(frozen=True)
class Distribution:
    """Which shares (1-based, as ``vault operator init`` numbers them) each custodian got."""

    placement: Mapping[str, tuple[int, ...]]


async def distribute(
    shares: Sequence[Share],
    *,
    threshold: int,
    config: CustodyConfig,
    custodians: Mapping[str, Custodian],
    fallback_dir: Path,
    replace: bool = False,
    allow_unsafe: bool = False,
    attempts: int = 4,
    retry_delay: float = 0.5,
) -> Distribution:
    """Plan, store, and fall back to a 0600 file in ``fallback_dir`` for what did not land."""
    if not shares:
        raise ValueError("no shares to distribute")
    try:
        placement = plan(
            len(shares), threshold=threshold, config=config, allow_unsafe=allow_unsafe
        )
    except ValueError as exc:
        problem = f"no safe way to place {len(shares)} shares: {exc}; nothing was stored"
        path = await _fallback_or_raise(
            shares, {UNPLACED: list(range(len(shares)))}, fallback_dir, problem
        )
        raise DistributionError(
            f"{problem}. All shares were written to {path} (mode 0600): fix the custody "
            "config, import them from there, then delete the file",
            fallback=path,
        ) from None

    results = await asyncio.gather(
        *(
            _store(
                custodians[name],
                [shares[index] for index in indices],
                replace=replace,
                attempts=attempts,
                retry_delay=retry_delay,
            )
            for name, indices in placement.items()
        )
    )
    failures = {
        name: error for name, error in zip(placement, results, strict=True) if error is not None
    }
    if failures:
        undelivered = {
            f"{name} ({custodians[name].describe()})": list(placement[name]) for name in failures
        }
        problem = (
            f"custodians {', '.join(sorted(failures))} could not store their shares "
            f"({'; '.join(failures.values())})"
        )
        path = await _fallback_or_raise(shares, undelivered, fallback_dir, problem)
        stored = sorted(set(placement) - set(failures))
        raise DistributionError(
            f"{problem}. Their shares were written to {path} (mode 0600): once the custodian "
            f"works, store them with `unsealer custody import --fallback-file {path}`, then "
            f"delete the file. Stored as planned: {', '.join(stored) or 'none'}",
            fallback=path,
        )
    distribution = Distribution(
        placement={name: tuple(i + 1 for i in indices) for name, indices in placement.items()}
    )
    log.info(
        "custody.distributed",
        placement={name: list(numbers) for name, numbers in distribution.placement.items()},
    )
    return distribution


def plan(
    count: int, *, threshold: int, config: CustodyConfig, allow_unsafe: bool = False
) -> dict[str, list[int]]:
    """Share indices (0-based) per writable custodian; ``ValueError`` when none is safe."""
    writable = [s for s in config.share_custodians if s.writable and (s.shares or 0) > 0]
    if not writable:
        raise ValueError("no writable custodian has a 'shares' count")
    # Read-only custodians (peers, env) hold shares we do not place: count them pessimistically
    # (without a count, as all of them). A writable one without a count is given none.
    fixed = [
        Holding(custodian=s.name, count=s.shares or 0, identity_from=_identity_from(s),
                unknown=s.shares is None and not s.writable, place=s.place)
        for s in config.share_custodians
        if s not in writable
    ]
    capacity = sum(s.shares or 0 for s in writable)
    if capacity < count:
        # Cyclic filling covers every share exactly when the capacities add up to the count.
        raise ValueError(
            f"the writable custodians hold {capacity} shares in all, fewer than the {count} "
            "to place"
        )
    fallback: dict[str, list[int]] | None = None
    reasons = ""
    for order in itertools.islice(itertools.permutations(writable), _MAX_ORDERS):
        placement = _cyclic(order, count)
        holdings = fixed + [
            Holding(
                custodian=s.name,
                fingerprints=frozenset(str(i) for i in placement[s.name]),
                identity_from=_identity_from(s),
                place=s.place,
            )
            for s in order
        ]
        report = check_invariant(holdings, threshold=threshold)
        if report.ok:
            return placement
        fallback = fallback or placement
        reasons = "; ".join(str(v) for v in report.violations)
    if allow_unsafe and fallback is not None:
        log.error("custody.distribution.unsafe", reason=reasons, allowed="development flag set")
        return fallback
    raise ValueError(f"every layout breaks the invariant (e.g. {reasons})")


def _cyclic(order: Sequence[CustodianConfig], count: int) -> dict[str, list[int]]:
    placement: dict[str, list[int]] = {}
    position = 0
    for spec in order:
        capacity = min(spec.shares or 0, count)
        placement[spec.name] = [(position + offset) % count for offset in range(capacity)]
        position = (position + capacity) % count
    return placement


def _identity_from(spec: CustodianConfig) -> str | None:
    return spec.encryption.identity_from if spec.encryption else None


async def _store(
    custodian: Custodian,
    shares: list[Share],
    *,
    replace: bool,
    attempts: int,
    retry_delay: float,
) -> str | None:
    """Store with retries; the last error's message, or ``None`` on success."""
    for attempt in range(1, attempts + 1):
        try:
            await custodian.store(shares, replace=replace)
        except CustodyConflict as exc:
            log.error("custody.distribution.conflict", custodian=custodian.name, error=str(exc))
            return str(exc)
        except CustodyError as exc:
            if attempt == attempts:
                log.error(
                    "custody.distribution.failed",
                    custodian=custodian.name,
                    attempts=attempts,
                    error=str(exc),
                )
                return str(exc)
            delay = min(retry_delay * 2 ** (attempt - 1), 30.0)
            log.warning(
                "custody.distribution.retry",
                custodian=custodian.name,
                attempt=attempt,
                delay=delay,
                error=str(exc),
            )
            await asyncio.sleep(delay)
        else:
            return None
    return "no attempt made"


async def _fallback_or_raise(
    shares: Sequence[Share], undelivered: Mapping[str, list[int]], directory: Path, problem: str
) -> Path:
    try:
        return await _fallback(shares, undelivered, directory)
    except OSError as exc:
        raise DistributionError(
            f"{problem}, and the fallback file in {directory} could not be written "
            f"({exc.strerror or type(exc).__name__}): the shares are only in memory now; "
            "save them before this process ends",
            fallback=None,
        ) from None


async def _fallback(
    shares: Sequence[Share], undelivered: Mapping[str, list[int]], directory: Path
) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"unsealer-undelivered-{stamp}-{secrets.token_hex(3)}.txt"
    lines = [
        f"# Unseal shares that could not be stored (vault-syncd unsealer, {stamp}).",
        "# Store each at the custodian named above it (unsealer custody import --fallback-file",
        "# this-file), then delete this file.",
    ]
    for where, indices in undelivered.items():
        for index in indices:
            lines.append(f"# for {where}: unseal key {index + 1}")
            lines.append(shares[index].base64())
    content = bytearray("\n".join(lines).encode("ascii") + b"\n")
    lines.clear()
    try:
        await asyncio.to_thread(write_private_file, path, content, overwrite=False)
    finally:
        zero(content)
    log.error("custody.distribution.fallback_written", path=str(path))
    return path


# --- reading a fallback file back ---------------------------------------------------------------

#: The "where" of shares that no custodian was planned for (no safe layout).
UNPLACED = "no custodian (no plan)"

_MARKER = re.compile(
    r"# for (?P<name>[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?) \((?P<where>.*)\): "
    r"(?:unseal key (?P<number>[1-9][0-9]{0,2})|(?P<token>root token))"
)
_UNPLACED_MARKER = re.compile(rf"# for {re.escape(UNPLACED)}: unseal key [1-9][0-9]{{0,2}}")


class FallbackFileError(ValueError):
    """A fallback file that cannot be read back. Never quotes a share or a token."""


def root_token_marker(custodian: str, where: str) -> str:
    """The comment line above a root token in a fallback file."""
    return f"# for {custodian} ({where}): root token"


@dataclass(eq=False)
class Fallback:
    """What a fallback file holds, by custodian; :meth:`wipe` when done."""

    #: Shares by custodian, in file order, and their ``vault operator init`` numbers.
    shares: dict[str, list[Share]] = field(default_factory=dict)
    numbers: dict[str, list[int]] = field(default_factory=dict)
    root_tokens: dict[str, RootToken] = field(default_factory=dict)
    #: Shares no custodian was planned for (the import found no safe layout).
    unplaced: int = 0

    def wipe(self) -> None:
        for shares in self.shares.values():
            wipe_all(shares)
        for token in self.root_tokens.values():
            token.wipe()


def parse_fallback(content: bytes | bytearray) -> Fallback:
    """Read a fallback file (:func:`distribute`'s, or ``init``'s root token file) back.

    Every value line must sit below a ``# for <custodian> (...): unseal key N`` or ``...: root
    token`` line. Errors name line numbers, never a value.
    """
    fallback = Fallback()
    pending: tuple[str, int | None] | None = None  # (custodian, share number or None: token)
    unplaced_pending = False
    try:
        for number, raw in enumerate(bytes(content).split(b"\n"), start=1):
            try:
                line = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise FallbackFileError(f"line {number} is not ASCII text") from None
            if not line:
                continue
            if line.startswith("#"):
                if pending is not None or unplaced_pending:
                    raise FallbackFileError(f"line {number - 1}: a '# for' line with no value")
                if match := _MARKER.fullmatch(line):
                    share_number = int(match["number"]) if match["number"] else None
                    pending = (match["name"], share_number)
                elif _UNPLACED_MARKER.fullmatch(line):
                    unplaced_pending = True
                continue
            if unplaced_pending:
                fallback.unplaced += 1
                unplaced_pending = False
                continue
            if pending is None:
                raise FallbackFileError(
                    f"line {number}: a value without a '# for <custodian> (...): unseal key N' "
                    "line above it: not a fallback file of the unsealer"
                )
            custodian, share_number = pending
            pending = None
            if share_number is None:
                if custodian in fallback.root_tokens:
                    raise FallbackFileError(f"line {number}: a second root token for "
                                            f"{custodian!r}")
                fallback.root_tokens[custodian] = RootToken(
                    line.encode("ascii"), origin=f"fallback line {number}"
                )
                continue
            try:
                share = Share.parse(line, origin=f"fallback line {number}")
            except ShareError:
                raise FallbackFileError(
                    f"line {number}: unseal key {share_number} is not an unseal share"
                ) from None
            fallback.shares.setdefault(custodian, []).append(share)
            fallback.numbers.setdefault(custodian, []).append(share_number)
        if pending is not None or unplaced_pending:
            raise FallbackFileError("the last '# for' line has no value")
    except BaseException:
        fallback.wipe()
        raise
    if not fallback.shares and not fallback.root_tokens and not fallback.unplaced:
        raise FallbackFileError("no '# for <custodian> (...)' entries: not a fallback file "
                                "of the unsealer")
    return fallback


async def restore(
    shares: Mapping[str, Sequence[Share]],
    *,
    custodians: Mapping[str, Custodian],
    replace: bool = False,
    attempts: int = 4,
    retry_delay: float = 0.5,
) -> dict[str, str]:
    """Store each custodian's shares (from a fallback file); the errors by custodian.

    Idempotent: a custodian that already holds exactly these shares succeeds without a write.
    Nothing is written elsewhere on failure: the file they came from still holds them.
    """
    names = list(shares)
    results = await asyncio.gather(*(
        _store(custodians[name], list(shares[name]), replace=replace, attempts=attempts,
               retry_delay=retry_delay)
        for name in names
    ))
    failures = {name: error for name, error in zip(names, results, strict=True) if error}
    log.info("custody.restored", custodians=[n for n in names if n not in failures],
             failed=sorted(failures))
    return failures
