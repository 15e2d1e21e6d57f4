"""The kubernetesSecret custodian through the project's JSON client (``plumbing.kube.Kube``)
against the Kubernetes emulation (``testbed.kube``), including the narrow RBAC it documents:
``get`` on the one named Secret to unseal; ``create`` and ``patch`` only to store."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest

from unsealer.custody import CustodyConflict, CustodyError
from unsealer.custody.custodian import StoredCustodian
from unsealer.custody.kube_secret import KubeSecretBackend
from unsealer.shares import Share

MakeShares = Callable[..., list[Share]]
SECRET = "unseal-a"
GET_ONLY = [
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get"]},
]
STORE = [
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET],
     "verbs": ["get", "patch"]},
    # Kubernetes cannot limit create by name: the name does not exist yet.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
]


def _custodian(api: Any, **extra: Any) -> StoredCustodian:
    backend = KubeSecretBackend(
        custodian="kube-a", kube=api, namespace="vault-custody", secret_name=SECRET,
        **extra,
    )
    return StoredCustodian(name="kube-a", kind="kubernetesSecret", backend=backend)


async def test_round_trip_with_the_rbac_for_init(
    kube: Any, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    shares = make_shares(5, 3)
    api = kube.client(kube.service_account_token(rules=STORE))
    try:
        custodian = _custodian(api)
        await custodian.store(shares[:2])  # create
        await custodian.store(shares[2:4], replace=True)  # patch
        fetched = await custodian.fetch()
    finally:
        await api.close()
    assert fetched == shares[2:4]
    assert [s.origin for s in fetched] == ["kube-a/share-1", "kube-a/share-2"]
    stored = kube.secret(SECRET)
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "vault-syncd-unsealer"}
    assert "ownerReferences" not in stored["metadata"]
    # Values are the share text Vault prints, so a Secret made by hand looks the same.
    assert kube.data(SECRET) == {
        "share-1": shares[2].base64().encode(), "share-2": shares[3].base64().encode(),
    }
    assert_no_leak(logs.getvalue() + repr(custodian) + custodian.describe(), shares)


async def test_get_alone_unseals_but_cannot_store(kube: Any, make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)
    kube.put_secret(SECRET, {"share-1": shares[0].base64().encode(), "share-2": b"x"})
    kube.put_secret("unseal-b", {"share-1": shares[1].base64().encode()})
    api = kube.client(kube.service_account_token(rules=GET_ONLY))
    try:
        with pytest.raises(CustodyError, match=r"cannot write .* 403 .*get, create and patch"):
            await _custodian(api).store(shares[2:4], replace=True)
        other = KubeSecretBackend(
            custodian="kube-b", kube=api, namespace="vault-custody",
            secret_name="unseal-b",
        )
        with pytest.raises(CustodyError) as caught:
            await StoredCustodian(name="kube-b", kind="kubernetesSecret", backend=other).fetch()
        message = str(caught.value)
        assert message.startswith("custodian 'kube-b': cannot read Secret vault-custody/unseal-b")
        assert "403" in message and "needs get on that Secret" in message
    finally:
        await api.close()


async def test_reads_a_hand_made_secret_in_numeric_order(
    kube: Any, kube_client: Any, make_shares: MakeShares
) -> None:
    shares = make_shares(12, 3)
    kube.put_secret(SECRET, {
        "share-10": shares[9].hex().encode() + b"\n",
        "share-2": shares[1].base64().encode(),
        "unrelated": b"keep me",
    })
    fetched = await _custodian(kube_client).fetch()
    assert [s.origin for s in fetched] == ["kube-a/share-2", "kube-a/share-10"]
    assert fetched == [shares[1], shares[9]]


async def test_custom_prefix_and_replace_drops_stale_keys_keeps_others(
    kube: Any, kube_client: Any, make_shares: MakeShares
) -> None:
    old, new = make_shares(5, 3)[:3], make_shares(5, 3)[:2]
    kube.put_secret(SECRET, {"age-identity": b"AGE-SECRET-KEY-1X"})
    custodian = _custodian(kube_client, key_prefix="unseal-key-", identity_key="age-identity")
    await custodian.store(old)
    await custodian.store(list(reversed(old)))  # the same set: a retried write, no request
    with pytest.raises(CustodyConflict):
        await custodian.store(new)
    await custodian.store(new, replace=True)
    assert sorted(kube.data(SECRET)) == ["age-identity", "unseal-key-1", "unseal-key-2"]
    assert await custodian.fetch() == new
    assert kube.running.requests.count("patch", "secrets") == 2


async def test_a_missing_secret_is_an_error(kube_client: Any) -> None:
    with pytest.raises(CustodyError, match="Secret vault-custody/unseal-a does not exist"):
        await _custodian(kube_client).fetch()


async def test_server_errors_are_custody_errors(
    kube: Any, kube_client: Any, make_shares: MakeShares
) -> None:
    kube.running.faults.error(500, verbs=["create"], resource="secrets", times=1)
    with pytest.raises(CustodyError, match=r"cannot write .* 500"):
        await _custodian(kube_client).store(make_shares(5, 3)[:2])


async def test_a_value_that_is_not_a_share_is_named_not_shown(
    kube: Any, kube_client: Any
) -> None:
    kube.put_secret(SECRET, {"share-1": b"hunter2-is-not-a-share"})
    with pytest.raises(CustodyError, match="kube-a/share-1") as caught:
        await _custodian(kube_client).fetch()
    assert "hunter2" not in str(caught.value)
    assert base64.b64encode(b"hunter2-is-not-a-share").decode() not in str(caught.value)
