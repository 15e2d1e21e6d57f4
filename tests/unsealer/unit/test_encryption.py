"""Age-encrypted custodians whose identity another custodian holds."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest

from unsealer.custody import CustodyError, build_custodians
from unsealer.custody.config import parse_config
from unsealer.shares import Share

MakeShares = Callable[..., list[Share]]


def _config(tmp_path: Path, recipient: str, holder: dict[str, Any]) -> Any:
    disk = {
        "name": "disk", "kind": "file", "path": str(tmp_path / "shares"),
        "encryptedFor": recipient, "identityFrom": holder["name"],
    }
    return parse_config(
        {"custodians": [disk, holder]}, source="c", vault_namespace="vault", require_files=False
    )


async def test_shares_encrypted_at_rest_decrypt_with_the_other_custodians_identity(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    identity = pyrage.x25519.Identity.generate()
    holder = {"name": "keys", "kind": "env", "variable": "UNUSED", "identityVariable": "AGE_ID"}
    config = _config(tmp_path, str(identity.to_public()), holder)
    custodians = build_custodians(config, environ={"AGE_ID": str(identity), "UNUSED": ""})
    shares = make_shares(5, 3)[:2]

    await custodians["disk"].store(shares)
    stored = (tmp_path / "shares").read_text()
    assert_no_leak(stored, shares)
    lines = [line for line in stored.splitlines() if not line.startswith("#")]
    # Each line is a standard age file (base64): the age tools can read it.
    assert pyrage.decrypt(base64.b64decode(lines[0]), [identity]) == shares[0].base64().encode()

    fetched = await custodians["disk"].fetch()
    assert fetched == shares
    assert "age-encrypted (identity at 'keys')" in custodians["disk"].describe()
    # The identity holder's own shares are another matter: it holds none here.
    assert await custodians["keys"].fetch() == []
    assert_no_leak(logs.getvalue(), shares)


async def test_identity_in_a_kubernetes_secret(
    tmp_path: Path, make_shares: MakeShares, kube: Any, kube_client: Any
) -> None:
    identity = pyrage.x25519.Identity.generate()
    kube.put_secret("age", {"identity": str(identity).encode()})
    holder = {
        "name": "keys", "kind": "kubernetesSecret", "namespace": "vault-custody",
        "secretName": "age", "identityKey": "identity",
    }
    custodians = build_custodians(
        _config(tmp_path, str(identity.to_public()), holder), kube=kube_client
    )
    shares = make_shares(5, 3)[:2]
    await custodians["disk"].store(shares)
    assert await custodians["disk"].fetch() == shares


async def test_the_wrong_identity_or_none_at_all_is_an_error(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    right, wrong = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    holder = {"name": "keys", "kind": "env", "variable": "UNUSED", "identityVariable": "AGE_ID"}
    config = _config(tmp_path, str(right.to_public()), holder)
    await build_custodians(config, environ={"AGE_ID": str(right)})["disk"].store(
        make_shares(5, 3)[:2]
    )

    with pytest.raises(CustodyError, match="'keys' is not the one for recipient age1") as caught:
        await build_custodians(config, environ={"AGE_ID": str(wrong)})["disk"].fetch()
    assert str(wrong) not in str(caught.value)
    with pytest.raises(CustodyError, match="'keys' holds no age identity"):
        await build_custodians(config, environ={})["disk"].fetch()
    with pytest.raises(CustodyError, match="not an age X25519 identity") as caught:
        await build_custodians(config, environ={"AGE_ID": "AGE-SECRET-KEY-1NOPE"})[
            "disk"
        ].fetch()
    assert "NOPE" not in str(caught.value)


async def test_ciphertext_for_another_recipient_does_not_decrypt(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    identity, stranger = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    share = make_shares(5, 3)[0]
    foreign = pyrage.encrypt(share.base64().encode(), [stranger.to_public()])
    path = tmp_path / "shares"
    path.write_text(base64.b64encode(foreign).decode() + "\n")
    path.chmod(0o600)
    holder = {"name": "keys", "kind": "env", "variable": "UNUSED", "identityVariable": "AGE_ID"}
    disk = build_custodians(
        _config(tmp_path, str(identity.to_public()), holder), environ={"AGE_ID": str(identity)}
    )["disk"]
    with pytest.raises(CustodyError, match="entry line1 does not decrypt with the identity"):
        await disk.fetch()
