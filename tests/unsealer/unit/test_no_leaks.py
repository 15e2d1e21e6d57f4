"""Share material never reaches a log line, an exception (with its chain) or a repr, along the
failure paths where it is closest at hand."""

from __future__ import annotations

import io
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest

from unsealer.custody import CustodyError, build_custodians, check_invariant, survey
from unsealer.custody.config import parse_config
from unsealer.init_output import InitOutputError, parse_init_output
from unsealer.shares import FingerprintKey, Share, ShareError, check_consistency

MakeShares = Callable[..., list[Share]]


def _rendered(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


async def test_failure_paths_keep_shares_out_of_errors_and_logs(
    tmp_path: Path,
    make_shares: MakeShares,
    logs: io.StringIO,
    assert_no_leak: Any,
    kube: Any,
) -> None:
    shares = make_shares(5, 3)
    seen: list[str] = []

    # A share with one character too many, in every place a share is parsed from.
    for text in (shares[0].hex() + "0", shares[0].base64() + "A", shares[0].hex()[:-1]):
        with pytest.raises(ShareError) as share_error:
            Share.parse(text)
        seen.append(_rendered(share_error.value))
        with pytest.raises(InitOutputError) as init_error:
            parse_init_output(f"Unseal Key 1: {text}\nUnseal Key 2: {shares[1].base64()}\n")
        seen.append(_rendered(init_error.value))

    (tmp_path / "shares").write_text(shares[2].hex() + "zz\n")
    (tmp_path / "shares").chmod(0o600)
    kube.put_secret("unseal", {"share-1": shares[3].base64().encode() + b"!"})
    identity = pyrage.x25519.Identity.generate()
    config = parse_config(
        {
            "custodians": [
                {"name": "disk", "kind": "file", "path": str(tmp_path / "shares")},
                {"name": "kube", "kind": "kubernetesSecret", "namespace": "vault-custody",
                 "secretName": "unseal"},
                {"name": "sealed", "kind": "env", "variable": "SEALED",
                 "encryptedFor": str(identity.to_public()), "identityFrom": "keys"},
                {"name": "keys", "kind": "env", "variable": "NONE", "identityVariable": "ID"},
            ]
        },
        source="c", vault_namespace="vault",
    )
    environ = {"SEALED": shares[4].base64(), "ID": str(identity)}  # plaintext, not age
    api = kube.client()
    try:
        custodians = build_custodians(config, kube=api, environ=environ)
        for name in ("disk", "kube", "sealed"):
            with pytest.raises(CustodyError) as custody_error:
                await custodians[name].fetch()
            seen.append(_rendered(custody_error.value))
        holdings, _ = await survey(
            config, custodians=custodians, fingerprint_key=FingerprintKey.generate()
        )
    finally:
        await api.close()
    seen.append(repr(custodians) + "".join(c.describe() for c in custodians.values()))
    seen.append(repr(check_invariant(holdings, threshold=3)))
    seen.append(repr(check_consistency(shares, threshold=3)) + repr(shares))

    assert_no_leak("\n".join(seen) + logs.getvalue(), shares)
    assert str(identity) not in "\n".join(seen) + logs.getvalue()
