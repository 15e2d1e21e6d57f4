"""The keyed fingerprint of Secret data."""

from __future__ import annotations

import hashlib
import json

import pytest

from syncd.fingerprint import KEY_BYTES, fingerprint, new_key

KEY = b"k" * 32


def test_hex_sha256_and_deterministic() -> None:
    data = {"user": b"admin", "password": b"hunter2"}
    first = fingerprint(key=KEY, data=data)
    assert len(first) == 64 and int(first, 16) >= 0
    assert fingerprint(key=KEY, data=dict(reversed(list(data.items())))) == first


def test_changes_with_any_change() -> None:
    base = fingerprint(key=KEY, data={"a": b"1", "b": b"2"})
    assert fingerprint(key=KEY, data={"a": b"1", "b": b"3"}) != base
    assert fingerprint(key=KEY, data={"a": b"1", "c": b"2"}) != base
    assert fingerprint(key=KEY, data={"a": b"1"}) != base
    assert fingerprint(key=KEY, data={"a": b"1", "b": b"2", "c": b""}) != base
    assert fingerprint(key=b"j" * 32, data={"a": b"1", "b": b"2"}) != base


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"a": b"bc"}, {"ab": b"c"}),  # a key/value boundary shift
        ({"a": b"", "b": b""}, {"a": b"\x00\x00\x00\x00\x00\x00\x00\x01b"}),
        ({}, {"": b""}),
    ],
)
def test_encoding_is_unambiguous(one: dict[str, bytes], other: dict[str, bytes]) -> None:
    assert fingerprint(key=KEY, data=one) != fingerprint(key=KEY, data=other)


def test_is_keyed_not_a_plain_hash() -> None:
    data = {"password": b"hunter2"}
    mac = fingerprint(key=KEY, data=data)
    for guess in (b"hunter2", json.dumps({"password": "hunter2"}).encode(),
                  b"password=hunter2"):
        assert mac != hashlib.sha256(guess).hexdigest()


def test_new_key_is_random_and_long_enough() -> None:
    one, two = new_key(), new_key()
    assert len(one) == KEY_BYTES == 32
    assert one != two
    fingerprint(key=one, data={})


def test_short_key_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        fingerprint(key=b"short", data={})


def test_non_bytes_value_refused_without_showing_it() -> None:
    with pytest.raises(TypeError) as info:
        fingerprint(key=KEY, data={"password": "hunter2"})  # type: ignore[dict-item]
    assert "'password'" in str(info.value)
    assert "hunter2" not in str(info.value)
