"""Hand freshly made shares to the custodians (init, import), so that nothing is ever lost.

The shares from ``vault operator init`` exist nowhere else: if a custodian write fails and the
process ends, the Vault can never be unsealed again. So distribution is careful in this order:

1. Plan: give each writable custodian its configured number of shares (``shares`` in the
   custody config), laid out cyclically (with three custodians of two shares each and three
   shares: AB, CA, BC), trying custodian orders until the invariant holds and every share is
   placed at least once. No plan, no writes.
2. Store each custodian's shares, retrying failures with backoff a bounded number of times. A
   custodian that already holds other shares is not retried (:class:`CustodyConflict`).
3. Whatever could not be delivered (or everything, when there is no plan) is written to a new
   0600 file, whose path is named in the :class:`DistributionError`. Its format is the file
   custodian's, with comments naming where each share was meant to go.

The caller's ``Share`` objects are left alone (the caller wipes them) so that even when the
fallback file cannot be written, the shares are still in the caller's hands.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from unsealer.custody.config import CustodianConfig, CustodyConfig
from unsealer.custody.custodian import Custodian, CustodyConflict, CustodyError
from unsealer.custody.file import write_private_file
from unsealer.custody.invariant import Holding, check_invariant
from unsealer.shares import Share, zero

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
            shares, {"no custodian (no plan)": list(range(len(shares)))}, fallback_dir, problem
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
            f"{problem}. Their shares were written to {path} (mode 0600): store them there "
            f"by hand, then delete the file. Stored as planned: {', '.join(stored) or 'none'}",
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
    writable = [s for s in config.custodians if s.writable and (s.shares or 0) > 0]
    if not writable:
        raise ValueError("no writable custodian has a 'shares' count")
    # Read-only custodians (peers, env) hold shares we do not place: count them pessimistically.
    fixed = [
        Holding(custodian=s.name, count=s.shares or 0, identity_from=_identity_from(s))
        for s in config.custodians
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
        "# Store each at the custodian named above it, then delete this file.",
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
