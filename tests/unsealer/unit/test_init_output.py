"""Parsing ``vault operator init`` output, as printed to a terminal and as ``-format=json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from unsealer.init_output import InitOutputError, RootToken, parse_init_output
from unsealer.shares import Share

MakeShares = Callable[..., list[Share]]
TOKEN = "hvs.CAESIJ8aP2bH4qEXAMPLEtokenExampleTokenExampleTok"


def _terminal(shares: list[Share], threshold: int, *, newline: str = "\n") -> str:
    keys = "".join(f"Unseal Key {i}: {s.base64()}\n" for i, s in enumerate(shares, start=1))
    noun = "shares" if len(shares) > 1 else "share"
    prose = (
        f"\nInitial Root Token: {TOKEN}\n\n"
        f"Vault initialized with {len(shares)} key {noun} and a key threshold of {threshold}. "
        "Please securely\ndistribute the key shares printed above. When the Vault is re-sealed,\n"
        f"restarted, or stopped, you must supply at least {threshold} of these keys to unseal "
        "it\nbefore it can start servicing requests.\n\nVault does not store the generated "
        "root key. Without at least 3 keys to\nreconstruct the root key, Vault will remain "
        'permanently sealed!\n\nIt is possible to generate new unseal keys, provided you have '
        'a quorum of\nexisting unseal keys shares. See "vault operator rekey" for more '
        "information.\n"
    )
    return (keys + prose).replace("\n", newline)


def test_terminal_output(make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)
    with parse_init_output(_terminal(shares, 3)) as result:
        assert list(result.shares) == shares
        assert (result.threshold, result.share_count) == (3, 5)
        assert isinstance(result.root_token, RootToken)
        assert result.root_token.reveal() == TOKEN
        assert TOKEN not in repr(result) and TOKEN not in repr(result.root_token)
        origins = [s.origin for s in result.shares]
        assert origins[:2] == ["line 1: unseal key 1", "line 2: unseal key 2"]
    assert all(share.wiped for share in result.shares) and result.root_token.wiped


def test_colours_crlf_and_indentation(make_shares: MakeShares) -> None:
    shares = make_shares(3, 2)
    text = _terminal(shares, 2, newline="\r\n")
    coloured = "\x1b[0m" + text.replace("Unseal Key", "\x1b[1;32mUnseal Key").replace(
        ": ", ":\x1b[0m ", 3
    )
    coloured = "\n".join("  " + line for line in coloured.split("\n"))
    result = parse_init_output(coloured.encode())
    assert list(result.shares) == shares
    assert (result.threshold, result.share_count) == (2, 3)


def test_one_of_one(make_shares: MakeShares) -> None:
    [key] = make_shares(1, 1)
    result = parse_init_output(_terminal([key], 1))
    assert list(result.shares) == [key] and len(result.shares[0]) == 32
    assert (result.threshold, result.share_count) == (1, 1)


def test_keys_without_prose_or_token(make_shares: MakeShares) -> None:
    shares = make_shares(3, 2)
    text = "".join(f"Unseal Key {i}: {s.hex()}\n" for i, s in enumerate(shares, start=1))
    result = parse_init_output(text)
    assert list(result.shares) == shares
    assert result.threshold is None and result.root_token is None


def test_json_output(make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)
    document = {
        "unseal_keys_b64": [s.base64() for s in shares],
        "unseal_keys_hex": [s.hex() for s in shares],
        "unseal_shares": 5,
        "unseal_threshold": 3,
        "recovery_keys_b64": [],
        "recovery_keys_hex": [],
        "recovery_keys_shares": 0,
        "recovery_keys_threshold": 0,
        "root_token": TOKEN,
    }
    result = parse_init_output(json.dumps(document, indent=2))
    assert list(result.shares) == shares
    assert (result.threshold, result.share_count) == (3, 5)
    assert result.root_token is not None and result.root_token.reveal() == TOKEN

    only_hex = {"unseal_keys_hex": document["unseal_keys_hex"], "unseal_threshold": 3}
    assert list(parse_init_output(json.dumps(only_hex)).shares) == shares


def _errors(make_shares: MakeShares) -> list[tuple[str, str]]:
    shares = make_shares(3, 2)
    good = [s.base64() for s in shares]
    other = make_shares(3, 2)[0].hex()
    pgp = "wcBMA" + "x" * 600
    return [
        ("Unseal Key 1: " + good[0] + "\nUnseal Key 3: " + good[2] + "\n", "numbered 1..2"),
        ("Unseal Key 1: " + good[0] + "\nUnseal Key 1: " + good[1] + "\n", "unseal key 1 repeats"),
        ("Unseal Key 1: " + pgp + "\n", "PGP-encrypted keys must be decrypted"),
        ("Unseal Key 1 " + good[0] + "\n", "line 1: malformed unseal key line"),
        ("Recovery Key 1: " + good[0] + "\n", "recovery keys cannot unseal"),
        ("hello\n", "no 'Unseal Key N"),
        ("".join(f"Unseal Key {i}: {k}\n" for i, k in enumerate(good, 1))
         + "Vault initialized with 5 key shares and a key threshold of 3.", "says 5 key shares"),
        (json.dumps({"unseal_keys_b64": good, "unseal_keys_hex": [shares[0].hex(), other,
                     shares[2].hex()]}), "disagree"),
        (json.dumps({"unseal_keys_b64": good, "unseal_threshold": 4}), "threshold 4"),
        (json.dumps({"unseal_keys_b64": [good[0], good[0]]}), "appears twice"),
        ('{"unseal_keys_b64": [' + good[0], "looks like JSON but is not"),
    ]


def test_errors_never_echo_the_input(make_shares: MakeShares, assert_no_leak: Any) -> None:
    for text, expected in _errors(make_shares):
        with pytest.raises(InitOutputError, match=expected) as caught:
            parse_init_output(text)
        message = str(caught.value)
        for word in text.replace(":", " ").replace('"', " ").split():
            if len(word) >= 16:
                assert word not in message, f"input echoed in: {message}"
