"""The pieces of the Vault-access boundaries on their own: the address allow-list and its
patterns, the --allowed-vault-addresses option, and the spec fields that bound what is sent
(token audiences and lifetime, the TLS server name, the uid that tells re-created objects)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import build_parser
from syncd.specs import SpecError, parse_vault_auth, parse_vault_connection
from syncd.vault_addresses import AddressPattern, AllowedAddresses, parse_address, parse_patterns
from syncd.vault_clients import KNOWN_API_AUDIENCES, api_server_audiences

Obj = dict[str, Any]


def _connections(*items: tuple[str, str]) -> Callable[[], list[Obj]]:
    return lambda: [{"metadata": {"namespace": ns, "name": f"c{i}"}, "spec": {"address": a}}
                    for i, (ns, a) in enumerate(items)]


@pytest.mark.parametrize(("pattern", "address", "allowed"), [
    ("https://vault.vault.svc:8200", "https://vault.vault.svc:8200/", True),
    ("https://vault.vault.svc:8200", "HTTPS://Vault.Vault.svc:8200", True),
    ("https://vault.example.com", "https://vault.example.com:443", True),
    ("https://vault.vault.svc:8200", "http://vault.vault.svc:8200", False),
    ("https://vault.vault.svc:8200", "https://vault.vault.svc:8201", False),
    ("https://vault.vault.svc:8200", "https://vault.vault.svc:8200/other", False),
    ("https://*.vault.svc:8200", "https://vault-0.vault.svc:8200", True),
    # '*' never runs across the end of the host: no path, port or userinfo tricks.
    ("https://*.vault.svc:8200", "https://evil.example/x.vault.svc:8200", False),
    ("https://*.vault.svc:8200", "https://evil.example:8200/.vault.svc", False),
    ("https://*.vault.svc:8200", "https://vault.svc.evil.example:8200", False),
    ("http://127.0.0.1:*", "http://127.0.0.1:4711", True),
    ("http://127.0.0.1:*", "http://127.0.0.2:4711", False),
])
def test_patterns_match_by_parts(pattern: str, address: str, allowed: bool) -> None:
    assert AddressPattern.parse(pattern).matches(parse_address(address)) is allowed


@pytest.mark.parametrize(("address", "problem"), [
    ("ftp://vault", "must be an http:// or https:// URL"),
    ("https://u:p@vault", "no credentials"),
    ("https://vault?x=1", "no credentials, query or fragment"),
    ("https://ev il.example", "is not a DNS name or an IP address"),
    ("https://vault\\.example", "is not a DNS name or an IP address"),
])
def test_addresses_that_are_no_plain_url_are_refused(address: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(address)
    assert problem in str(info.value)


def test_the_default_list_is_the_operators_own_vault_connections() -> None:
    allowed = AllowedAddresses(patterns=None, operator_namespace="vault-syncd",
                               connections=_connections(
                                   ("vault-syncd", "https://vault.vault.svc:8200"),
                                   ("app", "http://127.0.0.1:9999")))
    assert allowed.problem(namespace="app", name="x",
                           address="https://vault.vault.svc:8200/") is None
    # Another namespace's VaultConnection does not make its own address allowed.
    problem = allowed.problem(namespace="app", name="x", address="http://127.0.0.1:9999")
    assert problem is not None
    assert problem.startswith("VaultConnection app/x: spec.address: 'http://127.0.0.1:9999'")
    assert "VaultConnections in namespace vault-syncd" in problem


def test_an_explicit_list_replaces_the_default() -> None:
    allowed = AllowedAddresses(patterns=parse_patterns("https://*.vault.svc:8200"),
                               operator_namespace="vault-syncd",
                               connections=_connections(("vault-syncd", "http://10.0.0.1")))
    assert allowed.problem(namespace="a", name="b", address="https://v.vault.svc:8200") is None
    problem = allowed.problem(namespace="a", name="b", address="http://10.0.0.1")
    assert problem is not None and "--allowed-vault-addresses" in problem


def test_the_option_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["run", "--allowed-vault-addresses", "https://a.example:8200, http://127.0.0.1:*"])
    assert args.allowed_vault_addresses == ("https://a.example:8200", "http://127.0.0.1:*")
    assert build_parser().parse_args(["run"]).allowed_vault_addresses is None
    monkeypatch.setenv("SYNCD_ALLOWED_VAULT_ADDRESSES", "ftp://vault")
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run"])
    assert exit_info.value.code == 2
    assert "SYNCD_ALLOWED_VAULT_ADDRESSES" in capsys.readouterr().err


def _auth(**kubernetes: Any) -> Obj:
    return {"kind": "VaultAuth",
            "metadata": {"name": "k", "namespace": "app", "uid": "u-1", "generation": 1},
            "spec": {"method": "kubernetes",
                     "kubernetes": {"role": "r", "serviceAccount": "sa", **kubernetes}}}


def test_token_audience_defaults_to_vault_and_lifetime_is_at_most_ten_minutes() -> None:
    auth = parse_vault_auth(_auth(tokenExpirationSeconds=86400))
    assert auth.kubernetes is not None
    assert auth.kubernetes.audiences == ("vault",)
    assert auth.kubernetes.token_expiration_seconds == 600
    assert auth.uid == "u-1"
    with pytest.raises(SpecError, match=r"spec.kubernetes.audiences\[0\]: must not be empty"):
        parse_vault_auth(_auth(audiences=[""]))


def test_api_server_audiences_include_those_of_syncds_own_token(tmp_path: Path) -> None:
    claims = base64.urlsafe_b64encode(json.dumps(
        {"aud": ["https://oidc.example/cluster-7"]}).encode()).rstrip(b"=").decode()
    token = tmp_path / "token"
    token.write_text(f"e30.{claims}.c2ln")
    assert api_server_audiences(token) == KNOWN_API_AUDIENCES | {"https://oidc.example/cluster-7"}
    assert api_server_audiences(tmp_path / "absent") == KNOWN_API_AUDIENCES
    assert "https://kubernetes.default.svc.cluster.local" in KNOWN_API_AUDIENCES


def _connection(**spec: Any) -> Obj:
    return {"kind": "VaultConnection",
            "metadata": {"name": "c", "namespace": "app", "uid": "u-2", "generation": 1},
            "spec": {"address": "https://10.0.0.5:8200", **spec}}


def test_tls_server_name_is_a_dns_name() -> None:
    connection = parse_vault_connection(_connection(tlsServerName="vault.vault.svc"))
    assert (connection.tls_server_name, connection.uid) == ("vault.vault.svc", "u-2")
    for bad, message in [("10.0.0.5", "is an IP address"), ("Vault.svc", "is not a DNS name"),
                         ("vault/x", "is not a DNS name")]:
        with pytest.raises(SpecError) as info:
            parse_vault_connection(_connection(tlsServerName=bad))
        assert [p.path for p in info.value.problems] == ["spec.tlsServerName"]
        assert message in str(info.value)


def test_a_client_sends_only_to_its_own_origin() -> None:
    import requests

    from plumbing.vault import make_client
    from syncd.vault_clients import ForeignAddress, _pin

    client = make_client(address="http://127.0.0.1:1", timeout=1.0)
    _pin(client, origin=parse_address("http://127.0.0.1:1"), server_name=None)
    with pytest.raises(ForeignAddress):
        client.session.get("http://127.0.0.2:1/v1/secret/data/x")
    with pytest.raises(ForeignAddress):
        client.session.get("https://127.0.0.1:1/v1/secret/data/x")
    # Its own origin, with a query (a pinned kv-v2 version): sent (and refused: nothing listens).
    with pytest.raises(requests.ConnectionError) as refused:
        client.session.get("http://127.0.0.1:1/v1/secret/data/x?version=3")
    assert not isinstance(refused.value, ForeignAddress)
    assert client.allow_redirects is False


async def test_one_session_per_vault_connection_and_a_changed_one_replaces_it() -> None:
    """The aiohttp session of KV reads is the VaultConnection's, whoever logs in with it; a
    new generation gets a new one, and the old one is closed once no read uses it."""
    import dataclasses
    from typing import cast

    from plumbing.kube import Kube
    from plumbing.vault import VaultPool
    from syncd.vault_clients import VaultClients

    pool = VaultPool(max_workers=1)
    clients = VaultClients(kube=cast(Kube, None), pool=pool, addresses=AllowedAddresses(
        patterns=None, operator_namespace="vault-syncd", connections=_connections()))
    try:
        first = parse_vault_connection(_connection())
        shared = await clients._session(first, verify=False)
        assert await clients._session(first, verify=False) is shared
        shared.in_flight = 1  # a read under way on it
        second = await clients._session(dataclasses.replace(first, generation=2), verify=False)
        assert second is not shared
        third = await clients._session(dataclasses.replace(first, generation=3), verify=False)
        assert clients._retired == [shared, second]
        shared.in_flight = 0  # the read is done: closed at the next change
        await clients._session(dataclasses.replace(first, generation=4), verify=False)
        assert clients._retired == [third]
    finally:
        await clients.close()
        pool.shutdown()
    assert clients._sessions == {} and clients._retired == []
