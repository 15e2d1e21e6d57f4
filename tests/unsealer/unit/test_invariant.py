"""The split-custody invariant, from fingerprints and from configured counts."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest

from unsealer.custody import (
    Holding,
    InvariantError,
    build_custodians,
    check_invariant,
    require_invariant,
    static_holdings,
    survey,
)
from unsealer.custody.config import parse_config
from unsealer.shares import FingerprintKey, Share

MakeShares = Callable[..., list[Share]]


def _holding(name: str, fingerprints: str, **extra: Any) -> Holding:
    return Holding(custodian=name, fingerprints=frozenset(fingerprints), **extra)


def test_good_three_custodian_layout_holds() -> None:
    report = check_invariant(
        [_holding("a", "AB"), _holding("b", "BC"), _holding("c", "AC")], threshold=3
    )
    assert report.ok and report.sufficient and report.total == 3
    require_invariant(report)


def test_one_custodian_with_the_threshold_is_refused() -> None:
    report = check_invariant([_holding("a", "ABC"), _holding("b", "DE")], threshold=3)
    [violation] = report.violations
    assert violation.custodians == ("a",) and violation.usable == 3
    assert str(violation) == "custodian 'a' alone yields 3 shares, and the threshold is 3"
    with pytest.raises(InvariantError, match="custodian 'a' alone yields 3"):
        require_invariant(report)


def test_duplicates_across_custodians_count_once() -> None:
    # "a" holds A twice under two names; dedupe is by fingerprint, so 2 < 3.
    assert check_invariant([_holding("a", "AAB"), _holding("b", "C")], threshold=3).ok


def test_ciphertext_plus_identity_holder_reaching_the_threshold_is_refused() -> None:
    holdings = [
        _holding("vault-disk", "AB", identity_from="kube-keys"),
        _holding("kube-keys", "C"),
        _holding("peer", "AC"),
    ]
    report = check_invariant(holdings, threshold=3)
    [violation] = report.violations
    assert violation.custodians == ("vault-disk", "kube-keys") and violation.usable == 3
    assert "together with 'kube-keys' (which holds its identity)" in str(violation)


def test_encrypted_shares_alone_do_not_count() -> None:
    holdings = [_holding("disk", "ABC", identity_from="keys"), _holding("keys", "")]
    report = check_invariant(holdings, threshold=3)
    # Alone, "disk" is ciphertext; with "keys" it is three shares: refused as a pair only.
    assert [v.custodians for v in report.violations] == [("disk", "keys")]


def test_holder_encrypted_to_someone_else_contributes_nothing_in_the_pair() -> None:
    holdings = [
        _holding("a", "AB", identity_from="b"),
        _holding("b", "CD", identity_from="c"),  # b's own shares need c's identity
        _holding("c", ""),
    ]
    assert check_invariant(holdings, threshold=3).ok


def test_identity_beside_its_own_ciphertext_is_a_violation() -> None:
    report = check_invariant([_holding("a", "A", identity_from="a"), _holding("b", "B")],
                             threshold=3)
    [violation] = report.violations
    assert "holds the identity that decrypts its own shares" in str(violation)


def test_counts_stand_in_for_unreachable_shares() -> None:
    holdings = [Holding(custodian="peer", count=2), _holding("disk", "AB")]
    assert check_invariant(holdings, threshold=3).ok
    holdings = [Holding(custodian="peer", count=3), _holding("disk", "AB")]
    assert not check_invariant(holdings, threshold=3).ok


def test_development_flag_logs_instead_of_refusing(
    logs: io.StringIO, log_events: Callable[[io.StringIO], list[dict[str, Any]]]
) -> None:
    report = check_invariant([_holding("a", "ABC")], threshold=3)
    require_invariant(report, allow_unsafe=True)
    [violated] = [e for e in log_events(logs) if e["event"] == "custody.invariant.violated"]
    assert violated["level"] == "error" and violated["custodians"] == ["a"]


def test_static_check_from_config() -> None:
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    config = parse_config(
        {
            "threshold": 3,
            "custodians": [
                {"name": "dev", "kind": "env", "variable": "A", "shares": 2,
                 "encryptedFor": recipient, "identityFrom": "keys"},
                {"name": "keys", "kind": "env", "variable": "B", "identityVariable": "K",
                 "shares": 1},
                {"name": "other", "kind": "env", "variable": "C"},
            ],
        },
        source="c", vault_namespace="vault",
    )
    holdings, unverified = static_holdings(config)
    report = check_invariant(holdings, threshold=config.threshold or 0, unverified=unverified)
    assert [v.custodians for v in report.violations] == [("dev", "keys")]
    assert report.unverified == ("other",)


async def test_survey_fingerprints_what_custodians_hold(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    shares = make_shares(3, 3)
    a, b, c = shares
    environ = {
        "A": f"{a.hex()} {b.hex()}", "B": f"{b.base64()} {c.hex()}", "C": f"{a.hex()} {c.hex()}",
    }
    config = parse_config(
        {"custodians": [{"name": n.lower(), "kind": "env", "variable": n} for n in "ABC"]},
        source="c", vault_namespace="vault",
    )
    custodians = build_custodians(config, environ=environ)
    key = FingerprintKey.generate()
    holdings, unverified = await survey(config, custodians=custodians, fingerprint_key=key)
    assert unverified == []
    assert holdings[1].fingerprints == {b.fingerprint(key), c.fingerprint(key)}
    report = check_invariant(holdings, threshold=3)
    assert report.ok and report.total == 3

    environ["A"] += f" {c.hex()}"
    holdings, _ = await survey(config, custodians=custodians, fingerprint_key=key)
    assert [v.custodians for v in check_invariant(holdings, threshold=3).violations] == [("a",)]
    assert_no_leak(logs.getvalue(), shares)
