"""THE invariant: no single place, and no ciphertext together with its key, yields the threshold.

Split custody is only worth its complexity if it holds, so the unsealer checks it before it
serves and refuses to start when it does not (unless told, explicitly, that this is a
development setup). Custodians are grouped by *place* (:mod:`.config`: a namespace, a node, a
peer, or a declared place): whoever reads one Secret in a namespace reads them all, whoever is
root on a node reads every file there. Two compromises are modelled:

- one place: the shares its custodians hold in plain text, or encrypted to an identity held in
  the same place (ciphertext beside its key is plain text with extra steps; a custodian holding
  its own identity is reported as such);
- a place together with the place that holds the identity of one of its encrypted custodians.

Shares are compared by fingerprint (keyed HMAC, :meth:`~unsealer.shares.Share.fingerprint`), so
the same share held twice counts once, and the check itself never needs share material. Where a
custodian cannot be read (a peer releases nothing until a pod is sealed; a Secret before
``init``) its configured ``shares`` count stands in, counted as distinct: the pessimistic guess.
Without a count it holds an *unknown* number, counted as all of them: a place with such a
custodian fails until the custodian is read or given a ``shares`` count.
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
    #: Neither read nor counted: it may hold any number, so it counts as holding all of them.
    unknown: bool = False
    #: For an encrypted custodian: who holds the identity that decrypts it.
    identity_from: str | None = None
    #: Where it is (:attr:`~.config.CustodianConfig.place`); its own name when not given.
    place: str = ""

    @property
    def where(self) -> str:
        return self.place or self.custodian


@dataclass(frozen=True, kw_only=True)
class Violation:
    custodians: tuple[str, ...]
    #: Distinct shares the compromise yields; ``None``: unknown, counted as all of them.
    usable: int | None
    threshold: int
    reason: str
    places: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, kw_only=True)
class PlaceRow:
    """One line of the table of places: what one compromise (a place, or a place with the
    place of a key it needs) yields, and how far that is from the threshold."""

    places: tuple[str, ...]
    custodians: tuple[str, ...]
    #: ``None``: unknown (a custodian neither read nor counted).
    usable: int | None
    threshold: int

    @property
    def margin(self) -> int | None:
        """Shares still missing to reach the threshold; safe above 0."""
        return None if self.usable is None else self.threshold - self.usable


@dataclass(frozen=True, kw_only=True)
class InvariantReport:
    threshold: int
    violations: tuple[Violation, ...]
    #: Distinct shares all custodians yield together; below the threshold nothing can unseal.
    total: int
    #: Custodians that could be neither read nor counted (each also breaks the invariant).
    unverified: tuple[str, ...] = field(default=())
    #: Every compromise checked, places first, then places with the place of a key.
    places: tuple[PlaceRow, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def sufficient(self) -> bool:
        return self.total >= self.threshold


def check_invariant(
    holdings: Sequence[Holding], *, threshold: int, unverified: Sequence[str] = ()
) -> InvariantReport:
    """Check every place and every (place, place of a key one of its custodians needs) pair."""
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    by_name = {holding.custodian: holding for holding in holdings}
    places: dict[str, list[str]] = {}
    for holding in holdings:
        places.setdefault(holding.where, []).append(holding.custodian)
    violations: list[Violation] = []
    for holding in holdings:
        if holding.identity_from == holding.custodian:
            violations.append(Violation(
                custodians=(holding.custodian,), places=(holding.where,),
                usable=_usable({holding.custodian}, by_name), threshold=threshold,
                reason=f"custodian {holding.custodian!r} holds the identity that decrypts "
                "its own shares: the encryption protects nothing",
            ))
    groups: list[tuple[str, ...]] = [(place,) for place in places]
    for holding in holdings:
        holder = holding.identity_from
        if holder is None:
            continue
        if holder not in by_name:
            raise ValueError(f"custodian {holding.custodian!r}: no holding for {holder!r}")
        pair = (holding.where, by_name[holder].where)
        if pair[0] != pair[1] and pair not in groups:
            groups.append(pair)
    rows: list[PlaceRow] = []
    for group in groups:
        members = tuple(name for place in group for name in places[place])
        usable = _usable(set(members), by_name)
        rows.append(PlaceRow(places=group, custodians=members, usable=usable,
                             threshold=threshold))
        if usable is None or usable >= threshold:
            violations.append(Violation(
                custodians=members, places=group, usable=usable, threshold=threshold,
                reason=_reason(group, members, usable, threshold, by_name),
            ))
    known = _usable(set(by_name), by_name, unknown_as_none=False)
    return InvariantReport(
        threshold=threshold,
        violations=tuple(violations),
        total=known or 0,
        unverified=tuple(dict.fromkeys([*unverified, *(h.custodian for h in holdings
                                                        if h.unknown)])),
        places=tuple(rows),
    )


def _reason(
    group: tuple[str, ...],
    members: tuple[str, ...],
    usable: int | None,
    threshold: int,
    by_name: Mapping[str, Holding],
) -> str:
    def named(place: str) -> str:
        return f"place {place} ({', '.join(n for n in members if by_name[n].where == place)})"

    what = named(group[0]) if len(group) == 1 else (
        f"{named(group[0])} together with {named(group[1])}, which holds the key to its "
        "encrypted shares,"
    )
    if usable is None:
        unknown = [name for name in members if by_name[name].unknown]
        return (
            f"{what} may yield any number of shares: {', '.join(repr(n) for n in unknown)} "
            "could not be read and has no 'shares' count in the custody config, so it counts "
            f"as holding all of them (the threshold is {threshold})"
        )
    alone = " alone" if len(group) == 1 else ""
    return f"{what}{alone} yields {usable} shares, and the threshold is {threshold}"


def _usable(
    group: set[str], by_name: Mapping[str, Holding], *, unknown_as_none: bool = True
) -> int | None:
    fingerprints: set[str] = set()
    count = 0
    for name in group:
        holding = by_name[name]
        if holding.identity_from is None or holding.identity_from in group:
            if holding.unknown and unknown_as_none:
                return None
            fingerprints |= holding.fingerprints
            count += holding.count
    return len(fingerprints) + count


def static_holdings(
    config: CustodyConfig, *, count_unknown: bool = True
) -> tuple[list[Holding], list[str]]:
    """Holdings from the configured ``shares`` counts alone, and the custodians without one.

    A custodian without a count holds an unknown number (counted as all of them), unless
    ``count_unknown=False``: then it counts as none, which checks only what the config states
    (the check made before any custodian is read, see :func:`check_configured`).
    """
    holdings = [
        Holding(
            custodian=spec.name,
            count=spec.shares or 0,
            unknown=count_unknown and spec.shares is None,
            identity_from=spec.encryption.identity_from if spec.encryption else None,
            place=spec.place,
        )
        for spec in config.share_custodians
    ]
    return holdings, [spec.name for spec in config.share_custodians if spec.shares is None]


def check_configured(
    config: CustodyConfig, *, threshold: int | None = None
) -> InvariantReport | None:
    """The invariant from the config alone (stated counts; none for unstated ones): what no
    custodian needs to be read to refuse. ``threshold`` defaults to the config's; ``None``
    when neither is known."""
    threshold = threshold or config.threshold
    if threshold is None:
        return None
    holdings, _ = static_holdings(config, count_unknown=False)
    return check_invariant(holdings, threshold=threshold)


def require_configured(
    config: CustodyConfig, *, threshold: int | None = None, allow_unsafe: bool = False
) -> None:
    """Refuse (:class:`InvariantError`) a config whose stated counts already break the
    invariant by place: before any custodian is read, anything is logged, or Vault is asked
    anything. ``unsealer run``, ``init`` and ``custody verify`` all start with it, so one config
    is refused by all three in the same words (exit 2)."""
    report = check_configured(config, threshold=threshold)
    if report is not None and not report.ok:  # silent when it holds: the full check follows
        require_invariant(report, allow_unsafe=allow_unsafe)


async def survey(
    config: CustodyConfig,
    *,
    custodians: Mapping[str, Custodian],
    fingerprint_key: FingerprintKey,
) -> tuple[list[Holding], list[str]]:
    """Holdings from what each custodian holds now, by fingerprint.

    Peers, and custodians that cannot be read, fall back to their configured count, else hold
    an unknown number. Returns the holdings and the custodians that could be checked neither
    way. Shares fetched here are wiped before returning. Logs nothing: a refusal must be the
    first thing a refused process says (see :func:`require_invariant`).
    """
    holdings: list[Holding] = []
    unverified: list[str] = []
    for spec in config.share_custodians:
        identity_from = spec.encryption.identity_from if spec.encryption else None
        fingerprints: frozenset[str] | None = None
        if not isinstance(spec, PeerConfig):
            try:
                shares = await custodians[spec.name].fetch()
            except CustodyError:
                pass  # its count stands in; unread without one, it counts as all
            else:
                try:
                    fingerprints = frozenset(s.fingerprint(fingerprint_key) for s in shares)
                finally:
                    wipe_all(shares)
        unknown = fingerprints is None and spec.shares is None
        if unknown:
            unverified.append(spec.name)
        holdings.append(
            Holding(
                custodian=spec.name,
                fingerprints=fingerprints or frozenset(),
                count=(spec.shares or 0) if fingerprints is None else 0,
                unknown=unknown,
                identity_from=identity_from,
                place=spec.place,
            )
        )
    return holdings, unverified


def require_invariant(report: InvariantReport, *, allow_unsafe: bool = False) -> None:
    """Raise :class:`InvariantError` on a violation, unless ``allow_unsafe`` (development),
    in which case each violation is logged as an error and the caller goes on.

    Nothing is logged before the verdict: a refusal is one line, the first of the process.
    """
    if not report.ok and not allow_unsafe:
        reasons = "; ".join(violation.reason for violation in report.violations)
        raise InvariantError(f"split custody does not hold: {reasons}")
    if not report.sufficient:
        log.warning(
            "custody.invariant.insufficient", total=report.total, threshold=report.threshold
        )
    if report.ok:
        log.info("custody.invariant.holds", threshold=report.threshold, total=report.total,
                 places=len({place for row in report.places for place in row.places}))
        return
    for violation in report.violations:
        log.error(
            "custody.invariant.violated",
            custodians=list(violation.custodians),
            reason=violation.reason,
            allowed="development flag set",
        )
