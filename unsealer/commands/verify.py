"""``unsealer custody verify``: would the custodians unseal this Vault, and only together?

The night the cluster loses power is the wrong time to learn that a Secret was deleted, a file
was restored from an old backup, or a config edit put three shares in one place. This command
checks, without touching Vault's seal:

1. every custodian answers, by name (a peer is not asked: it releases shares only to unseal a
   pod it sees sealed; its configured count stands in);
2. the shares fit this Vault: Vault's ``t`` and ``n`` from a pod's ``sys/seal-status`` against
   the custody config, the number of distinct shares held (at least ``t``, at most ``n``) and
   their length;
3. the shares agree on one secret (:func:`~unsealer.shares.check_consistency`, in a thread: it
   is pure-Python arithmetic); a corrupt share, or one from another Vault, is named by
   custodian and slot. It takes ``t + 1`` distinct shares to see that something is wrong and
   ``t + 2`` to say which one;
4. the split-custody invariant, from what each custodian holds now
   (:func:`~unsealer.custody.survey` and :func:`~unsealer.custody.check_invariant`);
5. for each custodian configured to hold the root token (``rootTokenKey``, ``rootTokenFile``),
   whether it holds one: yes or no, never the token. Not holding one is not a problem (it may
   have been revoked on purpose); not being able to tell is.

Only keyed fingerprints of shares are printed (``--fingerprint-key`` makes them comparable with
``unsealer run``'s logs). Exit 0 when every check passes, 1 when one fails (each failure on the
report, and one line on stderr naming them), 2 when the config cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from plumbing.options import OptionParser
from unsealer.commands import options
from unsealer.commands.custody_access import open_custody
from unsealer.commands.root_token import open_store
from unsealer.commands.runner import (
    FAILED,
    OK,
    USAGE,
    Clients,
    CommandError,
    execute,
    report,
)
from unsealer.commands.status import PodStatus, probe
from unsealer.commands.targets import find_targets
from unsealer.custody import (
    Custodian,
    CustodyConfig,
    CustodyError,
    InvariantReport,
    check_invariant,
    survey,
)
from unsealer.custody.config import PeerConfig
from unsealer.custody.invariant import require_configured
from unsealer.custody.root_token import can_hold_root_token
from unsealer.shares import Consistency, FingerprintKey, Share, check_consistency, wipe_all

log = structlog.get_logger("unsealer")

#: Vault's barrier key is 32 bytes; a share adds the x byte, except in a 1-of-1 seal.
KEY_BYTES = 32


EPILOG = """\
exit status:
  0  every check passed
  1  a check failed: a custodian unreachable, a share inconsistent or not this Vault's,
     too few shares, or split custody violated (each is listed; stderr has one line)
  2  bad options, or an unusable custody config or credentials
"""


def add_parser(custody: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser: OptionParser = custody.add_parser(
        "verify",
        help="check that the custodians hold a safe, usable set of shares for this Vault",
        description="Check, without touching the seal, that every custodian answers, that "
        "the shares they hold fit this Vault and agree on one key, and that split custody "
        "holds (no custodian alone, nor an encrypted one with its key holder, reaches the "
        "threshold). Only keyed fingerprints of shares are printed.",
        epilog=EPILOG,
        env_prefix="UNSEALER_",
    )
    options.add_custody_config(parser)
    options.add_kubernetes(parser)
    options.add_vault_target(parser)
    parser.option(
        "--fingerprint-key", type=options.fingerprint_key, default=None, metavar="HEX",
        help="hex key (16+ bytes) of the printed share fingerprints, to compare them with "
        "unsealer run's logs (default: a random one)",
    )
    options.add_command_logging(parser)
    parser.set_defaults(entry=main)


def main(args: argparse.Namespace) -> int:
    return execute(args, name="custody verify", handler=verify)


@dataclass
class Fetched:
    """What one custodian gave: shares, or why not."""

    name: str
    describe: str
    shares: list[Share] = field(default_factory=list)
    error: str | None = None
    #: Not asked (a peer), with the reason.
    skipped: str | None = None
    #: Holds shares (not an identity holder declared ``shares: 0``).
    holds_shares: bool = True


@dataclass
class Findings:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, line: str) -> None:
        self.problems.append(line)


async def verify(args: argparse.Namespace, clients: Clients) -> int:
    key = (
        FingerprintKey(args.fingerprint_key)
        if args.fingerprint_key
        else FingerprintKey.generate()
    )
    config, custodians = await open_custody(args, clients)
    require_configured(config)
    findings = Findings()
    invariant: InvariantReport | None = None
    fetched = await fetch_all(config, custodians)
    try:
        vault = await seal_of_vault(args, clients, findings)
        threshold = _threshold(config, vault, findings)
        describe_custodians(fetched, key, findings)
        await describe_root_tokens(config, clients, findings)
        shares = [share for item in fetched for share in item.shares]
        check_counts(shares, config=config, vault=vault, threshold=threshold, key=key,
                     findings=findings)
        if threshold is not None:
            consistency = await asyncio.to_thread(
                check_consistency, shares, threshold=threshold
            )
            describe_consistency(consistency, distinct=_distinct(shares, key),
                                 threshold=threshold, findings=findings)
            holdings, unverified = await survey(
                config, custodians=custodians, fingerprint_key=key
            )
            invariant = check_invariant(holdings, threshold=threshold, unverified=unverified)
            describe_invariant(invariant, findings)
    finally:
        for item in fetched:
            wipe_all(item.shares)
    print("\n".join(findings.lines))
    if not findings.problems:
        print("Result: OK")
        return OK
    print(f"Result: FAILED ({len(findings.problems)} problem(s))")
    for problem in findings.problems:
        print(f"  - {problem}")
    return report(
        "custody verify",
        f"{len(findings.problems)} problem(s): {'; '.join(findings.problems)}",
        code=USAGE if invariant is not None and not invariant.ok else FAILED,
    )


async def fetch_all(config: CustodyConfig, custodians: Mapping[str, Custodian]) -> list[Fetched]:
    """Every custodian at once; each one's shares or the reason it gave none."""

    async def one(spec_name: str, is_peer: bool) -> Fetched:
        custodian = custodians[spec_name]
        item = Fetched(name=spec_name, describe=custodian.describe(),
                       holds_shares=config.custodian(spec_name).holds_shares)
        if is_peer:
            item.skipped = "not asked: a peer releases shares only to unseal a pod it sees sealed"
            return item
        try:
            item.shares = await custodian.fetch()
        except CustodyError as exc:
            item.error = str(exc)
        except Exception as exc:  # a backend bug must not hide the other custodians' results
            log.debug("custody.verify.fetch_failed", custodian=spec_name, exc_info=exc)
            item.error = f"custodian {spec_name!r}: unexpected {type(exc).__name__}"
        return item

    return list(await asyncio.gather(*(
        one(spec.name, isinstance(spec, PeerConfig)) for spec in config.share_custodians
    )))


async def seal_of_vault(
    args: argparse.Namespace, clients: Clients, findings: Findings
) -> PodStatus | None:
    """The seal status of the first pod that answers initialised (else the first answer)."""
    try:
        targets = await find_targets(args, clients)
    except CommandError as exc:
        findings.problem(f"cannot find Vault: {exc}")
        return None
    rows = await asyncio.gather(*(probe(target, clients) for target in targets))
    answered = [row for row in rows if row.reachable]
    for row in rows:
        if not row.reachable:
            findings.say(f"Vault {row.pod}: {row.state} ({row.error})")
    if not answered:
        findings.problem("no Vault pod answered sys/seal-status, so the shares cannot be "
                         "checked against Vault's threshold")
        return None
    chosen = next((row for row in answered if row.initialized), answered[0])
    if not chosen.initialized:
        findings.say(f"Vault {chosen.pod} ({chosen.address}): not initialised")
        findings.problem(f"Vault {chosen.pod} is not initialised: there are no shares to "
                         "verify yet (unsealer init)")
        return None
    findings.say(
        f"Vault {chosen.pod} ({chosen.address}): initialised, "
        f"{'sealed' if chosen.sealed else 'unsealed'}, "
        f"threshold {chosen.threshold} of {chosen.shares} shares"
    )
    return chosen


def _threshold(config: CustodyConfig, vault: PodStatus | None, findings: Findings) -> int | None:
    if vault is not None:
        if config.threshold is not None and config.threshold != vault.threshold:
            findings.problem(
                f"the custody config says threshold {config.threshold}, Vault says "
                f"{vault.threshold}: fix 'threshold' in {config.source}"
            )
        if config.shares is not None and config.shares != vault.shares:
            findings.problem(
                f"the custody config says {config.shares} shares, Vault made {vault.shares}: "
                f"fix 'shares' in {config.source}"
            )
        return vault.threshold
    if config.threshold is not None:
        findings.say(f"Using the custody config's threshold {config.threshold} (Vault unknown)")
        return config.threshold
    findings.problem("the threshold is unknown (Vault did not answer and the custody config "
                     "has no 'threshold'): consistency and the invariant were not checked")
    return None


def describe_custodians(
    fetched: Sequence[Fetched], key: FingerprintKey, findings: Findings
) -> None:
    findings.say("Custodians:")
    width = max(len(item.name) for item in fetched)
    for item in fetched:
        name = item.name.ljust(width)
        if item.error is not None:
            findings.say(f"  {name}  UNREACHABLE  {item.describe}")
            findings.say(f"  {' ' * width}  {item.error}")
            findings.problem(f"custodian {item.name!r} is unreachable: {item.error}")
        elif item.skipped is not None:
            findings.say(f"  {name}  not fetched  {item.describe}")
            findings.say(f"  {' ' * width}  {item.skipped}")
        else:
            findings.say(f"  {name}  reachable    {item.describe}: {len(item.shares)} share(s)")
            for share in item.shares:
                findings.say(f"  {' ' * width}    {share.origin}  fingerprint "
                             f"{share.fingerprint(key)}")
            if not item.shares and item.holds_shares:
                findings.problem(f"custodian {item.name!r} holds no shares")


async def describe_root_tokens(
    config: CustodyConfig, clients: Clients, findings: Findings
) -> None:
    """Yes or no for each custodian that may hold the root token; never the token."""
    specs = [spec for spec in config.custodians if can_hold_root_token(spec)]
    if not specs:
        return

    async def one(spec_name: str) -> tuple[str, str, bool | str]:
        store = await open_store(config.custodian(spec_name), clients)
        try:
            return spec_name, store.describe(), await store.holds()
        except CustodyError as exc:
            return spec_name, store.describe(), str(exc)

    answers = await asyncio.gather(*(one(spec.name) for spec in specs))
    findings.say("Root token:")
    width = max(len(spec.name) for spec in specs)
    for name, where, held in answers:
        if isinstance(held, str):
            findings.say(f"  {name.ljust(width)}  unknown  {where}: {held}")
            findings.problem(f"whether custodian {name!r} holds the root token is unknown: "
                             f"{held}")
        else:
            findings.say(f"  {name.ljust(width)}  {'yes' if held else 'no':<7}  {where}")


def check_counts(
    shares: Sequence[Share],
    *,
    config: CustodyConfig,
    vault: PodStatus | None,
    threshold: int | None,
    key: FingerprintKey,
    findings: Findings,
) -> None:
    distinct = _distinct(shares, key)
    total = vault.shares if vault is not None else config.shares
    of = f" of Vault's {total}" if total is not None else ""
    findings.say(f"Shares: {distinct} distinct{of} held by the reachable custodians")
    if total is not None and distinct > total:
        findings.problem(
            f"the custodians hold {distinct} distinct shares but Vault made only {total}: "
            "some shares are not this Vault's"
        )
    if threshold is not None and distinct < threshold:
        findings.problem(
            f"the reachable custodians hold {distinct} distinct shares; unsealing needs "
            f"{threshold}"
        )
    if total is not None:
        expected = KEY_BYTES if total == 1 else KEY_BYTES + 1
        for share in shares:
            if len(share) != expected:
                findings.problem(
                    f"share {share.origin} is {len(share)} bytes; this Vault's shares are "
                    f"{expected}: it is not this Vault's"
                )


def describe_consistency(
    consistency: Consistency, *, distinct: int, threshold: int, findings: Findings
) -> None:
    for name in consistency.inconsistent:
        findings.problem(
            f"share {name} does not agree with the others: corrupt, or from another Vault"
        )
    if consistency.inconsistent:
        findings.say(
            f"Consistency: {len(consistency.consistent)} share(s) agree; inconsistent: "
            f"{', '.join(consistency.inconsistent)}"
        )
    elif consistency.conclusive:
        findings.say(
            f"Consistency: all {len(consistency.consistent)} shares agree on one key "
            f"({consistency.subsets_tried} combinations tried)"
        )
    elif consistency.disagreement:
        findings.say("Consistency: the shares disagree")
        findings.problem(
            f"the shares do not all agree on one key, and {distinct} distinct shares are too "
            f"few to tell which is wrong (that takes {threshold + 2})"
        )
    else:
        findings.say(
            f"Consistency: not checked: {distinct} distinct share(s); comparing takes at "
            f"least {threshold + 1} (only Vault can tell whether exactly {threshold} are right)"
        )


def describe_invariant(report: InvariantReport, findings: Findings) -> None:
    describe_places(report, findings)
    for violation in report.violations:
        findings.problem(f"split custody does not hold: {violation.reason}")
    if report.ok:
        findings.say(
            f"Invariant: holds: no place alone, nor a place together with the place of the key "
            f"to its encrypted shares, yields {report.threshold} shares"
        )
    else:
        findings.say(f"Invariant: VIOLATED ({len(report.violations)} way(s))")


def describe_places(report: InvariantReport, findings: Findings) -> None:
    """The table of places: each compromise checked, what it yields, and the margin (shares
    still missing to reach the threshold: safe above 0)."""
    header = ("place", "custodians", "shares", "margin")
    rows = [
        (" + ".join(row.places), ", ".join(row.custodians),
         "unknown" if row.usable is None else str(row.usable),
         "NONE" if row.margin is None or row.margin <= 0 else str(row.margin))
        for row in report.places
    ]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    findings.say(f"Places (threshold {report.threshold}):")
    for line in [header, *rows]:
        findings.say("  " + "  ".join(cell.ljust(width) for cell, width in
                                      zip(line, widths, strict=True)).rstrip())


def _distinct(shares: Sequence[Share], key: FingerprintKey) -> int:
    return len({share.fingerprint(key) for share in shares})
