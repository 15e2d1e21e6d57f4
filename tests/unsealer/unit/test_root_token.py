"""The root token at a custodian (file or Secret), and the fallback file read back."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from unsealer.custody import (
    CustodyConfigError,
    CustodyConflict,
    CustodyError,
    DistributionError,
    build_custodians,
)
from unsealer.custody.config import parse_config
from unsealer.custody.distribution import (
    FallbackFileError,
    distribute,
    parse_fallback,
    restore,
    root_token_marker,
)
from unsealer.custody.root_token import (
    FileRootTokenStore,
    SecretRootTokenStore,
    root_token_problem,
    root_token_store,
    store_with_retries,
)
from unsealer.init_output import RootToken
from unsealer.shares import Share

TOKEN = "hvs.TheRootTokenNobodyMaySee0123456789"
OTHER = "hvs.AnotherVaultsRootToken9876543210"

MakeShares = Callable[..., list[Share]]


def _token(text: str = TOKEN) -> RootToken:
    return RootToken(text.encode(), origin="test")


def _parse(custodians: list[dict[str, Any]]) -> Any:
    return parse_config({"custodians": custodians}, source="c", vault_namespace="vault",
                        require_files=False)


# --- config -------------------------------------------------------------------------------------


def test_the_config_keeps_the_root_token_apart_from_the_shares(tmp_path: Path) -> None:
    secret = {"name": "a", "kind": "kubernetesSecret", "namespace": "custody",
              "secretName": "s"}
    with pytest.raises(CustodyConfigError, match="'share-3' would read as a share key"):
        _parse([{**secret, "rootTokenKey": "share-3"}])
    with pytest.raises(CustodyConfigError, match="must differ from identityKey"):
        _parse([{**secret, "rootTokenKey": "age", "identityKey": "age"}])
    disk = {"name": "d", "kind": "file", "path": str(tmp_path / "shares")}
    with pytest.raises(CustodyConfigError, match="field 'rootTokenFile': must be a file of its"):
        _parse([{**disk, "rootTokenFile": str(tmp_path / "shares")}])
    loose = tmp_path / "loose"
    loose.write_text("x")
    loose.chmod(0o644)
    with pytest.raises(CustodyConfigError, match="is mode 0644; it must be 0600"):
        _parse([{**disk, "rootTokenFile": str(loose)}])

    config = _parse([
        {**secret, "namespace": "root", "rootTokenKey": "root-token", "shares": 0},
        {**disk, "rootTokenFile": str(tmp_path / "root"), "shares": 0},
        {"name": "e", "kind": "env", "variable": "X", "place": "dev-laptop"},
        {**secret, "name": "b", "secretName": "t"},
    ])
    a, d, e, b = config.custodians
    assert a.root_token_key == "root-token" and d.root_token_file == tmp_path / "root"
    assert root_token_problem(a) is None and root_token_problem(d) is None
    assert "a env custodian is read-only" in (root_token_problem(e) or "")
    assert "has no 'rootTokenKey'" in (root_token_problem(b) or "")
    with pytest.raises(ValueError, match="read-only"):
        root_token_store(e, kube=None)


def test_the_root_token_is_only_kept_in_a_place_without_shares(tmp_path: Path) -> None:
    """Beside shares (same Secret, same namespace, same node, same declared place): refused,
    naming the custodian, the field and what holds shares there."""
    token = {"name": "token", "kind": "kubernetesSecret", "namespace": "custody",
             "secretName": "s", "rootTokenKey": "root-token"}
    other = {"name": "b", "kind": "kubernetesSecret", "namespace": "custody",
             "secretName": "t", "shares": 2}
    with pytest.raises(CustodyConfigError, match=(
            r"custodian 'token': field 'rootTokenKey': the root token must be kept in a place "
            r"that holds no shares, but namespace/custody holds shares of token \(an unknown "
            r"number: no shares count\)")):
        _parse([token])  # the same Secret may hold shares: no count, so counted as shares
    with pytest.raises(CustodyConfigError, match=r"namespace/custody holds shares of b \(2\)"):
        _parse([{**token, "shares": 0}, other])  # same namespace
    with pytest.raises(CustodyConfigError, match=r"holds shares of b \(2\)"):
        _parse([{**token, "shares": 0, "namespace": "root", "place": "ops"},
                {**other, "place": "ops"}])  # declared one place
    disk = {"name": "d", "kind": "file", "path": str(tmp_path / "shares"), "shares": 2}
    with pytest.raises(CustodyConfigError, match=(
            r"custodian 'root': field 'rootTokenFile': .* but node/pi-1 holds shares of d")):
        parse_config({"custodians": [disk, {
            "name": "root", "kind": "file", "path": str(tmp_path / "unused"), "shares": 0,
            "rootTokenFile": str(tmp_path / "root")}]},
            source="c", vault_namespace="vault", require_files=False, node="pi-1")
    apart = _parse([{**token, "shares": 0, "namespace": "root"}, other])
    assert [c.place for c in apart.custodians] == ["namespace/root", "namespace/custody"]
    assert [c.name for c in apart.share_custodians] == ["b"]


# --- file ---------------------------------------------------------------------------------------


async def test_a_file_stores_once_idempotently_and_never_overwrites_another_token(
    tmp_path: Path, logs: io.StringIO,
) -> None:
    path = tmp_path / "root-token"
    store = FileRootTokenStore(custodian="disk", path=path)
    assert await store.holds() is False

    assert await store.store(_token()) is True
    assert await store.store(_token()) is False  # a retry after a lost reply
    assert path.read_text() == f"{TOKEN}\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await store.holds() is True

    with pytest.raises(CustodyConflict) as caught:
        await store.store(_token(OTHER))
    assert path.read_text() == f"{TOKEN}\n"
    assert await store.store(_token(OTHER), replace=True) is True
    assert path.read_text() == f"{OTHER}\n"

    path.chmod(0o644)
    with pytest.raises(CustodyError, match="is mode 0644") as refused:
        await store.holds()
    seen = logs.getvalue() + str(caught.value) + str(refused.value) + repr(store) + repr(_token())
    assert TOKEN not in seen and OTHER not in seen


async def test_retries_end_with_the_last_error_and_conflicts_are_not_retried(
    tmp_path: Path,
) -> None:
    store = FileRootTokenStore(custodian="disk", path=tmp_path / "missing" / "root-token")
    with pytest.raises(CustodyError, match=r"cannot write .*No such file or directory"):
        await store_with_retries(store, _token(), attempts=2, retry_delay=0)
    (tmp_path / "missing").mkdir()
    assert await store_with_retries(store, _token(), attempts=2, retry_delay=0) is True
    with pytest.raises(CustodyConflict):
        await store_with_retries(store, _token(OTHER), attempts=5, retry_delay=60)


# --- Secret -------------------------------------------------------------------------------------


async def test_a_secret_holds_the_token_under_its_own_key_beside_the_shares(
    kube: Any, logs: io.StringIO,
) -> None:
    kube.put_secret("unseal-a", {"share-1": b"one", "share-2": b"two"})
    client = kube.client()
    try:
        store = SecretRootTokenStore(custodian="kube-a", kube=client, namespace="vault-custody",
                                     secret_name="unseal-a", key="root-token")
        assert await store.holds() is False
        assert await store.store(_token()) is True
        assert await store.store(_token()) is False
        assert kube.data("unseal-a") == {"share-1": b"one", "share-2": b"two",
                                         "root-token": TOKEN.encode()}
        with pytest.raises(CustodyConflict, match="key 'root-token' already holds another"):
            await store.store(_token(OTHER))
        assert await store.holds() is True

        # A Secret that does not exist yet is created, with the token only.
        fresh = SecretRootTokenStore(custodian="kube-b", kube=client, namespace="vault-custody",
                                     secret_name="unseal-b", key="root-token")
        assert await fresh.store(_token()) is True
        assert kube.data("unseal-b") == {"root-token": TOKEN.encode()}

        kube.running.faults.error(500, verbs=["patch"], resource="secrets", name="unseal-a")
        with pytest.raises(CustodyError, match="cannot write Secret vault-custody/unseal-a: 500"):
            await store.store(_token(OTHER), replace=True)
    finally:
        await client.close()
    assert TOKEN not in logs.getvalue() and OTHER not in logs.getvalue()


# --- the fallback file --------------------------------------------------------------------------


class _Down:
    def __init__(self, name: str) -> None:
        self.name = name

    async def fetch(self, *, pod: str | None = None) -> list[Share]:
        return []

    async def store(self, shares: Any, *, replace: bool = False) -> None:
        raise CustodyError("down", custodian=self.name)

    def describe(self) -> str:
        return "a custodian that is down (for now)"


async def test_the_fallback_file_reads_back_and_restores_only_what_was_undelivered(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any,
) -> None:
    shares = make_shares(3, 3)
    config = parse_config(
        {"threshold": 3, "custodians": [
            {"name": n, "kind": "file", "path": str(tmp_path / n), "shares": 2, "place": n}
            for n in "abc"]},
        source="c", vault_namespace="vault", require_files=False,
    )
    custodians: dict[str, Any] = dict(build_custodians(config))
    working_b = custodians["b"]
    custodians["b"] = _Down("b")
    with pytest.raises(DistributionError, match="could not store") as caught:
        await distribute(shares, threshold=3, config=config, custodians=custodians,
                         fallback_dir=tmp_path, attempts=1)
    path = caught.value.fallback
    assert path is not None
    content = path.read_bytes()

    fallback = parse_fallback(content)
    assert list(fallback.shares) == ["b"] and fallback.numbers == {"b": [3, 1]}
    assert fallback.shares["b"] == [shares[2], shares[0]] and not fallback.root_tokens
    assert "b" in repr(fallback.shares) and shares[2].base64() not in repr(fallback.shares)

    # Still down: the error, nothing written. Back up: stored; again: already held, fine.
    failures = await restore(fallback.shares, custodians=custodians, attempts=1)
    assert failures == {"b": "custodian 'b': down"}
    custodians["b"] = working_b
    assert await restore(fallback.shares, custodians=custodians, attempts=1) == {}
    assert await restore(fallback.shares, custodians=custodians, attempts=1) == {}
    assert await working_b.fetch() == [shares[2], shares[0]]
    fallback.wipe()
    assert all(share.wiped for share in fallback.shares["b"])
    assert_no_leak(logs.getvalue(), shares)


def test_fallback_errors_name_lines_never_values(make_shares: MakeShares) -> None:
    share = make_shares(3, 3)[0]
    text = share.base64()
    bad = {
        f"{text}\n": "line 1: a value without a '# for <custodian>",
        f"# for a (x): unseal key 1\n{text[:10]}!\n": "line 2: unseal key 1 is not an unseal",
        "# for a (x): unseal key 1\n# for a (x): unseal key 2\n": "line 1: a '# for' line with",
        "# for a (x): unseal key 1\n": "the last '# for' line has no value",
        "# just a comment\n": "not a fallback file",
        f"{root_token_marker('a', 'x')}\n{TOKEN}\n{root_token_marker('a', 'x')}\n{TOKEN}\n":
            "line 4: a second root token for 'a'",
    }
    for content, message in bad.items():
        with pytest.raises(FallbackFileError, match=message) as caught:
            parse_fallback(content.encode())
        assert text not in str(caught.value) and TOKEN not in str(caught.value)

    token_file = f"# header\n{root_token_marker('kube-a', 'Secret s key (k)')}\n{TOKEN}\n"
    fallback = parse_fallback(token_file.encode())
    assert fallback.root_tokens["kube-a"].reveal() == TOKEN and not fallback.shares
    assert TOKEN not in repr(fallback)
    fallback.wipe()


def test_a_root_token_rescue_file_is_a_fallback_file(tmp_path: Path) -> None:
    from unsealer.commands.secret_io import rescue_root_token

    where = rescue_root_token(_token(), custodian="kube-a", where="Secret x/y key 'root-token'",
                              directory=tmp_path)
    (path,) = tmp_path.glob("unsealer-root-token-*.txt")
    assert where == f"the root token was written to {path} (mode 0600)"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    fallback = parse_fallback(path.read_bytes())
    assert fallback.root_tokens["kube-a"].reveal() == TOKEN


def test_a_peer_server_does_not_release_a_custodian_without_shares() -> None:
    with pytest.raises(CustodyConfigError, match=r"peerServer: field 'releases': 'token' holds "
                                                 r"no shares \(shares: 0\)"):
        parse_config({"custodians": [
            {"name": "token", "kind": "kubernetesSecret", "namespace": "root",
             "secretName": "t", "rootTokenKey": "root-token", "shares": 0}],
            "peerServer": {"releases": ["token"], "caFile": "/x/ca", "certFile": "/x/c",
                           "keyFile": "/x/k"}},
            source="c", vault_namespace="vault", local_files=False)
