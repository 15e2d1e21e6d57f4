"""Shares: Vault's parsing rules, wiping, no material in repr/pickle, keyed fingerprints, and the
consistency check that names the corrupt share."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import pickle
from collections.abc import Callable

import pytest

from unsealer.shares import FingerprintKey, Share, ShareError, check_consistency

MakeShares = Callable[..., list[Share]]


@pytest.mark.parametrize("length", [16, 32, 33])
def test_parses_hex_and_base64_like_vault(length: int) -> None:
    raw = os.urandom(length)
    for text in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(), f"  {raw.hex()}\n"):
        with Share.parse(text) as share:
            assert share.hex() == raw.hex()
            assert share.base64() == base64.b64encode(raw).decode()


def test_hex_of_the_wrong_length_falls_back_to_base64() -> None:
    # 16 hex digits decode to 8 bytes (too short), so Vault tries base64: 12 bytes, still short.
    with pytest.raises(ShareError, match="12 bytes"):
        Share.parse("0123456789abcdef")
    # 44 base64 characters of a 33-byte share that also happen to be hex-free.
    raw = os.urandom(33)
    assert Share.parse(base64.b64encode(raw)).hex() == raw.hex()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("asdf", "3 bytes"),  # valid base64, so it fails the length check, as in Vault
        ("not a share!", "not valid hex or base64"),
        (base64.b64encode(bytes(range(7, 41))).decode(), "34 bytes"),
        (bytes(range(9, 49)).hex(), "60 bytes"),  # 80 hex digits: too long as hex, so base64
        ("ÿÿ", "not valid hex or base64"),
    ],
)
def test_rejects_what_vault_rejects(text: str, message: str) -> None:
    with pytest.raises(ShareError, match=message) as caught:
        Share.parse(text)
    if text.strip():
        assert text not in str(caught.value)


def test_repr_and_str_show_origin_never_material(make_shares: MakeShares) -> None:
    [share] = make_shares(1, 1, prefix="kube-a")
    for shown in (repr(share), str(share), f"{share}", f"{[share]}"):
        assert shown in {"<Share from kube-a/1>", "[<Share from kube-a/1>]"}
        assert share.hex() not in shown and share.base64() not in shown


def test_wipe_zeroes_and_disables(make_shares: MakeShares) -> None:
    share = make_shares(3, 2)[0]
    buffer = share._view()
    with share:
        assert any(buffer)
    assert not any(buffer) and share.wiped
    assert "wiped" in repr(share)
    with pytest.raises(ValueError, match="wiped"):
        share.hex()


def test_cannot_be_pickled_or_copied(make_shares: MakeShares) -> None:
    share = make_shares(3, 2)[0]
    with pytest.raises(TypeError):
        pickle.dumps(share)
    with pytest.raises(TypeError):
        copy.copy(share)
    with pytest.raises(TypeError):
        pickle.dumps(FingerprintKey.generate())


def test_equality_by_content_but_unhashable(make_shares: MakeShares) -> None:
    share = make_shares(3, 2)[0]
    assert share == Share.parse(share.hex())
    with pytest.raises(TypeError):
        hash(share)


def test_fingerprint_is_keyed(make_shares: MakeShares) -> None:
    share = make_shares(3, 2)[0]
    one, other = FingerprintKey.generate(), FingerprintKey.generate()
    assert share.fingerprint(one) == Share.parse(share.base64()).fingerprint(one)
    assert share.fingerprint(one) != share.fingerprint(other)
    assert len(share.fingerprint(one)) == 16
    plain = hashlib.sha256(bytes.fromhex(share.hex())).hexdigest()
    assert share.fingerprint(one) not in plain
    assert repr(one) == "<FingerprintKey>"
    with pytest.raises(ValueError):
        FingerprintKey(b"short")


def test_consistent_shares_all_agree(make_shares: MakeShares) -> None:
    report = check_consistency(make_shares(5, 3), threshold=3)
    assert report.conclusive and not report.disagreement
    assert report.consistent == tuple(f"init/{i}" for i in range(1, 6))
    assert report.subsets_tried == 10


def test_corrupt_share_is_named(make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)
    corrupt = bytearray(shares[3]._view())
    corrupt[7] ^= 0x5A
    shares[3] = Share(corrupt, origin="kube-b/share-2")
    report = check_consistency(shares, threshold=3)
    assert report.conclusive and report.disagreement
    assert report.inconsistent == ("kube-b/share-2",)
    assert "kube-b/share-2" not in report.consistent


def test_share_from_another_vault_is_named(make_shares: MakeShares) -> None:
    shares = [*make_shares(5, 3)[:4], make_shares(5, 3, prefix="other")[0]]
    report = check_consistency(shares, threshold=3)
    assert report.inconsistent == ("other/1",)


def test_one_spare_share_detects_but_cannot_locate(make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)[:4]
    corrupt = bytearray(shares[0]._view())
    corrupt[0] ^= 1
    shares[0] = Share(corrupt, origin="x")
    report = check_consistency(shares, threshold=3)
    assert report.disagreement and not report.conclusive
    assert set(report.undetermined) == {"x", "init/2", "init/3", "init/4"}


def test_duplicates_count_once_and_keep_their_names(make_shares: MakeShares) -> None:
    shares = make_shares(4, 3)
    copy_of_first = Share.parse(shares[0].hex(), origin="file/line2")
    report = check_consistency([*shares, copy_of_first], threshold=3)
    assert report.conclusive and "file/line2" in report.consistent


def test_too_few_shares_is_undetermined(make_shares: MakeShares) -> None:
    report = check_consistency(make_shares(5, 3)[:3], threshold=3)
    assert not report.conclusive and not report.disagreement


def test_same_x_different_content_agrees_with_nothing(make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)
    forged = bytearray(os.urandom(32)) + shares[0]._view()[-1:]  # x byte of share 1
    report = check_consistency([*shares, Share(forged, origin="forged")], threshold=3)
    assert report.inconsistent == ("forged",)


def test_one_of_one_compares_raw_keys(make_shares: MakeShares) -> None:
    [key] = make_shares(1, 1)
    assert len(key) == 32
    copies = [key, Share.parse(key.base64(), origin="b"), Share(os.urandom(32), origin="bad")]
    report = check_consistency(copies, threshold=1)
    assert report.inconsistent == ("bad",) and set(report.consistent) == {"init/1", "b"}
    assert not check_consistency([key], threshold=1).conclusive


def test_subset_sampling_is_bounded(make_shares: MakeShares) -> None:
    shares = make_shares(8, 3)
    corrupt = bytearray(shares[0]._view())
    corrupt[0] ^= 1
    shares[0] = Share(corrupt, origin="bad")
    report = check_consistency(shares, threshold=3, max_subsets=12, seed=7)
    assert 12 <= report.subsets_tried <= 12 + 8  # the vote, then one re-check per outsider
    assert report.inconsistent == ("bad",)
