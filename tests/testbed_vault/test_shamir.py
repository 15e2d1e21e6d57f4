"""Shamir shares are byte-compatible with Vault's, checked against pyshamir as an oracle."""

from __future__ import annotations

import itertools
import os

import hvac
import pyshamir
import pytest

from testbed.vault import shamir
from testbed.vault.cluster import RunningVault

from .conftest import in_thread


def test_split_layout_and_distinct_nonzero_x() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, parts=255, threshold=3)
    assert all(len(share) == 33 for share in shares)
    xs = [share[-1] for share in shares]
    assert sorted(xs) == list(range(1, 256))


def test_our_shares_combine_with_pyshamir_from_every_subset() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, parts=5, threshold=3)
    for subset in itertools.combinations(shares, 3):
        assert bytes(pyshamir.combine([bytearray(s) for s in subset])) == secret
        assert shamir.combine(list(subset)) == secret


def test_pyshamir_shares_combine_with_ours() -> None:
    secret = os.urandom(32)
    shares = [bytes(s) for s in pyshamir.split(secret, 5, 3)]
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine(list(subset)) == secret
    # More than the threshold of consistent parts also reconstructs.
    assert shamir.combine(shares) == secret


def test_two_parts_of_a_three_threshold_do_not_reconstruct() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, parts=5, threshold=3)
    assert shamir.combine(shares[:2]) != secret


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([b"\x01" * 33], "less than two parts cannot be used to reconstruct the secret"),
        ([b"\x01", b"\x02"], "parts must be at least two bytes"),
        ([b"\x01" * 33, b"\x02" * 32], "all parts must be the same length"),
        ([b"\x01" * 32 + b"\x07", b"\x02" * 32 + b"\x07"], "duplicate part detected"),
    ],
)
def test_combine_errors_are_vaults(parts: list[bytes], message: str) -> None:
    with pytest.raises(shamir.ShamirError, match=f"^{message}$"):
        shamir.combine(parts)


@pytest.mark.parametrize(
    ("secret", "parts", "threshold", "message"),
    [
        (b"k", 2, 3, "parts cannot be less than threshold"),
        (b"k", 256, 3, "parts cannot exceed 255"),
        (b"k", 3, 1, "threshold must be at least 2"),
        (b"", 3, 2, "cannot split an empty secret"),
    ],
)
def test_split_errors_are_vaults(secret: bytes, parts: int, threshold: int, message: str) -> None:
    with pytest.raises(shamir.ShamirError, match=f"^{message}$"):
        shamir.split(secret, parts=parts, threshold=threshold)


async def test_init_shares_combine_with_pyshamir_and_pyshamir_shares_unseal(
    vault: RunningVault, client: hvac.Client
) -> None:
    init = await in_thread(client.sys.initialize, 5, 3)
    shares = [bytes.fromhex(k) for k in init["keys"]]
    assert all(len(s) == 33 for s in shares)
    assert len({s[-1] for s in shares}) == 5
    keys = {
        bytes(pyshamir.combine([bytearray(s) for s in subset]))
        for subset in itertools.combinations(shares, 3)
    }
    assert len(keys) == 1  # every 3-subset yields the one key
    (kek,) = keys
    assert len(kek) == 32
    # Re-split that key with pyshamir: Vault must accept shares it never issued.
    foreign = [bytes(s) for s in pyshamir.split(kek, 3, 3)]
    assert not set(foreign) & set(shares)
    status: dict[str, object] = {}
    for share in foreign:
        status = await in_thread(client.sys.submit_unseal_key, share.hex())
    assert status["sealed"] is False


async def test_one_of_one_share_is_the_raw_key(vault: RunningVault, client: hvac.Client) -> None:
    init = await in_thread(client.sys.initialize, 1, 1)
    (key_hex,) = init["keys"]
    (key_b64,) = init["keys_base64"]
    assert len(key_hex) == 64
    assert len(key_b64) == 44
    assert key_b64.endswith("=")
    status = await in_thread(client.sys.submit_unseal_key, key_b64)
    assert status["sealed"] is False
