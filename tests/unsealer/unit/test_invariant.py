"""The split-custody invariant, from fingerprints and from configured counts."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest

from unsealer.custody import (
    Holding,
    InvariantError,
    build_custodians,
    check_configured,
    check_invariant,
    require_invariant,
    static_holdings,
    survey,
)
from unsealer.custody.config import parse_config, this_node
from unsealer.custody.distribution import plan
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
    assert str(violation) == "place a (a) alone yields 3 shares, and the threshold is 3"
    with pytest.raises(InvariantError, match=r"place a \(a\) alone yields 3"):
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
    assert str(violation) == (
        "place vault-disk (vault-disk) together with place kube-keys (kube-keys), which holds "
        "the key to its encrypted shares, yields 3 shares, and the threshold is 3")


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
                 "encryptedFor": recipient, "identityFrom": "keys", "place": "p1"},
                {"name": "keys", "kind": "env", "variable": "B", "identityVariable": "K",
                 "shares": 1, "place": "p2"},
                {"name": "other", "kind": "env", "variable": "C", "place": "p3"},
            ],
        },
        source="c", vault_namespace="vault",
    )
    holdings, unverified = static_holdings(config)
    report = check_invariant(holdings, threshold=config.threshold or 0, unverified=unverified)
    # "other" has no count: it counts as holding everything, so its place fails too.
    assert [v.custodians for v in report.violations] == [("other",), ("dev", "keys")]
    assert report.unverified == ("other",)
    [unknown, _] = report.violations
    assert unknown.usable is None and "'other' could not be read and has no 'shares' count" \
        in str(unknown)


async def test_survey_fingerprints_what_custodians_hold(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    shares = make_shares(3, 3)
    a, b, c = shares
    environ = {
        "A": f"{a.hex()} {b.hex()}", "B": f"{b.base64()} {c.hex()}", "C": f"{a.hex()} {c.hex()}",
    }
    config = parse_config(
        {"custodians": [{"name": n.lower(), "kind": "env", "variable": n, "place": n}
                        for n in "ABC"]},
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


# --- places ------------------------------------------------------------------------------------


def _places_config(tmp_path: Path, custodians: list[dict[str, Any]], **extra: Any) -> Any:
    return parse_config({"threshold": 3, "shares": 5, "custodians": custodians},
                        source="c", vault_namespace="vault", require_files=False,
                        node="pi-1", **extra)


def _secret(name: str, namespace: str, secret: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "kubernetesSecret", "namespace": namespace,
            "secretName": secret, "shares": 2, **extra}


def _violations(config: Any) -> list[str]:
    holdings, _ = static_holdings(config)
    return [str(v) for v in check_invariant(holdings, threshold=3).violations]


def test_places_are_derived_from_where_custodians_are(tmp_path: Path) -> None:
    config = _places_config(tmp_path, [
        _secret("kube", "custody", "a"),
        {"name": "disk", "kind": "file", "path": str(tmp_path / "d"), "shares": 1},
        {"name": "dev", "kind": "env", "variable": "X", "shares": 0},
        {"name": "usb", "kind": "file", "path": str(tmp_path / "u"), "shares": 1,
         "place": "usb-key"},
    ])
    assert [c.place for c in config.custodians] == [
        "namespace/custody", "node/pi-1", "process", "usb-key"]


def test_the_node_is_node_name_else_the_host_name() -> None:
    assert this_node({"NODE_NAME": "pi-3"}) == "pi-3"
    assert this_node({}) == socket.gethostname()


@pytest.mark.parametrize(("custodians", "place"), [
    # Two custodians in one Secret (another key prefix): one namespace, one place.
    ([_secret("a", "custody", "s"), _secret("b", "custody", "s", keyPrefix="other-")],
     "place namespace/custody (a, b)"),
    # Two Secrets in one namespace.
    ([_secret("a", "custody", "s"), _secret("b", "custody", "t")],
     "place namespace/custody (a, b)"),
    # Two Secrets in two namespaces declared one place (one team administers both).
    ([_secret("a", "custody-a", "s", place="ops"), _secret("b", "custody-b", "t", place="ops")],
     "place ops (a, b)"),
])
def test_two_custodians_in_one_place_are_counted_together(
    tmp_path: Path, custodians: list[dict[str, Any]], place: str
) -> None:
    others = [_secret("c", "elsewhere", "u", shares=1)]
    assert _violations(_places_config(tmp_path, custodians + others)) == [
        f"{place} alone yields 4 shares, and the threshold is 3"]


def test_two_files_on_one_node_are_one_place(tmp_path: Path) -> None:
    files = [{"name": n, "kind": "file", "path": str(tmp_path / n), "shares": 2} for n in "ab"]
    config = _places_config(tmp_path, [*files, _secret("c", "custody", "s", shares=1)])
    assert _violations(config) == [
        "place node/pi-1 (a, b) alone yields 4 shares, and the threshold is 3"]
    with pytest.raises(ValueError, match=r"place node/pi-1 \(.*\) alone yields 4"):
        plan(5, threshold=3, config=config)  # init: no layout by place, no writes


def test_a_place_with_the_place_of_its_key_is_one_compromise(tmp_path: Path) -> None:
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    config = _places_config(tmp_path, [
        {"name": "disk", "kind": "file", "path": str(tmp_path / "d"), "shares": 2,
         "encryptedFor": recipient, "identityFrom": "keys"},
        _secret("keys", "custody-a", "k", identityKey="age", shares=0),
        _secret("near", "custody-a", "s", shares=1),
        _secret("far", "custody-b", "s", shares=2),
    ])
    holdings, _ = static_holdings(config)
    report = check_invariant(holdings, threshold=3)
    assert [str(v) for v in report.violations] == [
        "place node/pi-1 (disk) together with place namespace/custody-a (keys, near), which holds "
        "the key to its encrypted shares, yields 3 shares, and the threshold is 3"]
    # The table of places: each compromise, what it yields, and the margin to the threshold.
    assert [(row.places, row.usable, row.margin) for row in report.places] == [
        (("node/pi-1",), 0, 3), (("namespace/custody-a",), 1, 2),
        (("namespace/custody-b",), 2, 1), (("node/pi-1", "namespace/custody-a"), 3, 0)]


def test_an_unknown_count_counts_as_everything_until_read(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    config = _places_config(tmp_path, [
        {"name": "dev", "kind": "env", "variable": "DEV"},  # no count
        _secret("a", "custody-a", "s", shares=1),
    ])
    holdings, unverified = static_holdings(config)
    report = check_invariant(holdings, threshold=3, unverified=unverified)
    [violation] = report.violations
    assert violation.usable is None and violation.custodians == ("dev",)
    assert report.places[0].margin is None
    assert check_configured(config) is not None and check_configured(config).ok  # type: ignore[union-attr]


async def test_an_unknown_count_holds_once_read(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    a, _b, _c = make_shares(3, 3)
    config = _places_config(tmp_path, [
        {"name": "dev", "kind": "env", "variable": "DEV"},
        {"name": "gone", "kind": "env", "variable": "GONE", "place": "elsewhere"},
    ])
    key = FingerprintKey.generate()
    custodians = build_custodians(config, environ={"DEV": a.hex()})
    holdings, unverified = await survey(config, custodians=custodians, fingerprint_key=key)
    assert unverified == ["gone"]  # unset: neither read nor counted
    report = check_invariant(holdings, threshold=3, unverified=unverified)
    assert [v.custodians for v in report.violations] == [("gone",)]
    custodians = build_custodians(config, environ={"DEV": a.hex(), "GONE": a.hex()})
    holdings, unverified = await survey(config, custodians=custodians, fingerprint_key=key)
    assert unverified == [] and check_invariant(holdings, threshold=3).ok
