"""THE invariant: no single place, and no ciphertext together with its key, yields the threshold.

Split custody is only worth its complexity if it holds, so the unsealer checks it before it
serves and refuses to start when it does not (unless told, explicitly, that this is a
development setup). Two compromises are modelled:

- one custodian: the shares it holds in plain text, or encrypted to an identity it holds itself
  (ciphertext beside its key is plain text with extra steps, and is reported as such);
- an encrypted custodian together with the custodian that holds its identity: its shares plus
  everything the holder yields on its own.

Shares are compared by fingerprint (keyed HMAC, :meth:`~unsealer.shares.Share.fingerprint`), so
the same share held twice counts once, and the check itself never needs share material. Where a
custodian cannot be read yet (a peer releases nothing until a pod is sealed; a Secret before
``init``) its configured ``shares`` count stands in, counted as distinct: the pessimistic guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from unsealer.custody.config import CustodyConfig, PeerConfig
from unsealer.custody.custodian import Custodian, CustodyError
from unsealer.shares import FingerprintKey, wipe_all

log = structlog.get_logger("unsealer.custody")


class InvariantError(Exception):
    """The custody layout lets one compromise unseal Vault; the unsealer refuses to start."""


@dataclass(frozen=True, kw_only=True)
class Holding:
    """What one custodian holds, as far as the invariant needs to know."""

    custodian: str
    #: Fingerprints of the shares it holds (plaintext shares, after decryption).
    fingerprints: frozenset[str] = frozenset()
    #: Shares known only by number (not readable now); counted as distinct from all others.
    count: int = 0
    #: For an encrypted custodian: who holds the identity that decrypts it.
    identity_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class Violation:
    custodians: tuple[str, ...]
    usable: int
    threshold: int
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, kw_only=True)
class InvariantReport:
    threshold: int
    violations: tuple[Violation, ...]
    #: Distinct shares all custodians yield together; below the threshold nothing can unseal.
    total: int
    #: Custodians that could not be read and have no configured count: not checked.
    unverified: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def sufficient(self) -> bool:
        return self.total >= self.threshold


def check_invariant(
    holdings: Sequence[Holding], *, threshold: int, unverified: Sequence[str] = ()
) -> InvariantReport:
    """Check every single custodian and every (encrypted custodian, identity holder) pair."""
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    by_name = {holding.custodian: holding for holding in holdings}
    violations: list[Violation] = []
    for holding in holdings:
        name = holding.custodian
        if holding.identity_from == name:
            violations.append(
                Violation(
                    custodians=(name,),
                    usable=_usable({name}, by_name),
                    threshold=threshold,
                    reason=f"custodian {name!r} holds the identity that decrypts its own "
                    "shares: the encryption protects nothing",
                )
            )
        usable = _usable({name}, by_name)
        if usable >= threshold:
            violations.append(
                Violation(
                    custodians=(name,),
                    usable=usable,
                    threshold=threshold,
                    reason=f"custodian {name!r} alone yields {usable} shares, and the "
                    f"threshold is {threshold}",
                )
            )
    for holding in holdings:
        holder = holding.identity_from
        if holder is None or holder == holding.custodian:
            continue
        if holder not in by_name:
            raise ValueError(f"custodian {holding.custodian!r}: no holding for {holder!r}")
        pair = {holding.custodian, holder}
        usable = _usable(pair, by_name)
        if usable >= threshold:
            violations.append(
                Violation(
                    custodians=(holding.custodian, holder),
                    usable=usable,
                    threshold=threshold,
                    reason=f"custodian {holding.custodian!r} together with {holder!r} (which "
                    f"holds its identity) yields {usable} shares, and the threshold is "
                    f"{threshold}",
                )
            )
    return InvariantReport(
        threshold=threshold,
        violations=tuple(violations),
        total=_usable(set(by_name), by_name),
        unverified=tuple(unverified),
    )


def _usable(group: set[str], by_name: Mapping[str, Holding]) -> int:
    fingerprints: set[str] = set()
    count = 0
    for name in group:
        holding = by_name[name]
        if holding.identity_from is None or holding.identity_from in group:
            fingerprints |= holding.fingerprints
            count += holding.count
    return len(fingerprints) + count


def static_holdings(config: CustodyConfig) -> tuple[list[Holding], list[str]]:
    """Holdings from the configured ``shares`` counts alone, and the custodians without one."""
    holdings = [
        Holding(
            custodian=spec.name,
            count=spec.shares or 0,
            identity_from=spec.encryption.identity_from if spec.encryption else None,
        )
        for spec in config.custodians
    ]
    return holdings, [spec.name for spec in config.custodians if spec.shares is None]


async def survey(
    config: CustodyConfig,
    *,
    custodians: Mapping[str, Custodian],
    fingerprint_key: FingerprintKey,
) -> tuple[list[Holding], list[str]]:
    """Holdings from what each custodian holds now, by fingerprint.

    Peers, and custodians that cannot be read, fall back to their configured count. Returns
    the holdings and the custodians that could be checked neither way. Shares fetched here
    are wiped before returning.
    """
    holdings: list[Holding] = []
    unverified: list[str] = []
    for spec in config.custodians:
        identity_from = spec.encryption.identity_from if spec.encryption else None
        fingerprints: frozenset[str] | None = None
        if not isinstance(spec, PeerConfig):
            try:
                shares = await custodians[spec.name].fetch()
            except CustodyError as exc:
                log.warning("custody.invariant.unreadable", custodian=spec.name, error=str(exc))
            else:
                try:
                    fingerprints = frozenset(s.fingerprint(fingerprint_key) for s in shares)
                finally:
                    wipe_all(shares)
        if fingerprints is None and spec.shares is None:
            unverified.append(spec.name)
        holdings.append(
            Holding(
                custodian=spec.name,
                fingerprints=fingerprints or frozenset(),
                count=(spec.shares or 0) if fingerprints is None else 0,
                identity_from=identity_from,
            )
        )
    return holdings, unverified


def require_invariant(report: InvariantReport, *, allow_unsafe: bool = False) -> None:
    """Raise :class:`InvariantError` on a violation, unless ``allow_unsafe`` (development),
    in which case each violation is logged as an error and the caller goes on."""
    for name in report.unverified:
        log.warning(
            "custody.invariant.unverified",
            custodian=name,
            hint="set its 'shares' count in the custody config so it can be checked",
        )
    if not report.sufficient:
        log.warning(
            "custody.invariant.insufficient", total=report.total, threshold=report.threshold
        )
    if report.ok:
        log.info("custody.invariant.holds", threshold=report.threshold, total=report.total)
        return
    if allow_unsafe:
        for violation in report.violations:
            log.error(
                "custody.invariant.violated",
                custodians=list(violation.custodians),
                reason=violation.reason,
                allowed="development flag set",
            )
        return
    reasons = "; ".join(violation.reason for violation in report.violations)
    raise InvariantError(f"split custody does not hold: {reasons}")
