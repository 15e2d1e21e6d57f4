"""The peer custodian over real mutual TLS on loopback, with certificates made here."""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from unsealer.custody import CustodyError
from unsealer.custody.custodian import StoredCustodian
from unsealer.custody.environment import EnvironmentBackend
from unsealer.custody.peer import PeerCustodian, PeerServer, client_ssl_context, server_ssl_context
from unsealer.shares import FingerprintKey, Share

MakeShares = Callable[..., list[Share]]


@dataclass
class Peers:
    shares: list[Share]
    sealed: dict[str, bool]
    server: PeerServer
    authority: Any
    make_authority: Callable[[str], Any]
    key: FingerprintKey

    def client(
        self, authority: Any = None, *, cn: str = "unsealer-a", **extra: Any
    ) -> PeerCustodian:
        issuer = authority or self.authority
        cert, key = issuer.issue(cn)
        context = client_ssl_context(ca_file=self.authority.ca_file, cert_file=cert, key_file=key)
        return self.with_context(context, **extra)

    def with_context(self, context: ssl.SSLContext, **extra: Any) -> PeerCustodian:
        return PeerCustodian(
            name="node-b", url=f"https://127.0.0.1:{self.server.port}", ssl_context=context,
            **extra,
        )


async def _serve(
    make_authority: Callable[[str], Any], make_shares: MakeShares, *, allowed: tuple[str, ...],
    burst: int = 10, refill_seconds: float = 6.0,
) -> AsyncIterator[Peers]:
    authority = make_authority("peer")
    server_cert, server_key = authority.issue("unsealer-b", server=True, ips=("127.0.0.1",))
    shares = make_shares(5, 3)[:2]
    source = StoredCustodian(
        name="disk-b", kind="env",
        backend=EnvironmentBackend(
            custodian="disk-b", variable="S", environ={"S": " ".join(s.hex() for s in shares)}
        ),
    )
    sealed = {"vault-0": True, "vault-1": False}

    async def is_sealed(pod: str) -> bool:
        if pod == "vault-9":
            raise TimeoutError("seal-status timed out")
        return sealed.get(pod, False)

    key = FingerprintKey.generate()
    server = PeerServer(
        sources=[source], is_sealed=is_sealed, fingerprint_key=key, allowed_peers=allowed,
        ssl_context=server_ssl_context(
            ca_file=authority.ca_file, cert_file=server_cert, key_file=server_key
        ),
        host="127.0.0.1", port=0, burst=burst, refill_seconds=refill_seconds,
    )
    async with server:
        yield Peers(shares, sealed, server, authority, make_authority, key)


@pytest.fixture
async def peers(
    make_authority: Callable[[str], Any], make_shares: MakeShares
) -> AsyncIterator[Peers]:
    async for running in _serve(make_authority, make_shares, allowed=("unsealer-a",)):
        yield running


@pytest.fixture
async def limited_peers(
    make_authority: Callable[[str], Any], make_shares: MakeShares
) -> AsyncIterator[Peers]:
    async for running in _serve(
        make_authority, make_shares, allowed=("unsealer-a", "unsealer-c"), burst=2
    ):
        yield running


def test_a_server_without_allowed_peers_is_refused(make_authority: Callable[[str], Any]) -> None:
    # Without the list any certificate the peer CA ever signed would receive shares.
    authority = make_authority("peer")
    cert, key = authority.issue("unsealer-b", server=True, ips=("127.0.0.1",))

    async def is_sealed(pod: str) -> bool:
        return True

    with pytest.raises(ValueError, match="allowedPeers"):
        PeerServer(
            sources=[], is_sealed=is_sealed, fingerprint_key=FingerprintKey.generate(),
            allowed_peers=(), ssl_context=server_ssl_context(
                ca_file=authority.ca_file, cert_file=cert, key_file=key),
        )


async def test_each_peer_is_rate_limited_on_its_own(
    limited_peers: Peers,
    logs: io.StringIO,
    log_events: Callable[[io.StringIO], list[dict[str, Any]]],
) -> None:
    client = limited_peers.client()
    for _ in range(2):
        assert await client.fetch(pod="vault-0") == limited_peers.shares
    with pytest.raises(CustodyError, match=r"refused \(429\): too many requests"):
        await client.fetch(pod="vault-0")
    # Another allowed peer has its own bucket.
    assert await limited_peers.client(cn="unsealer-c").fetch(pod="vault-0")
    refusals = [e for e in log_events(logs) if e["event"] == "custody.peer.refused"]
    assert [(r["peer"], r["reason"]) for r in refusals] == [("unsealer-a", "rate limited")]
    released = [e for e in log_events(logs) if e["event"] == "custody.peer.released"]
    assert [r["peer"] for r in released] == ["unsealer-a", "unsealer-a", "unsealer-c"]


async def test_a_rate_limited_client_waits_its_turn_and_no_longer(
    make_authority: Callable[[str], Any], make_shares: MakeShares, logs: io.StringIO,
    log_events: Callable[[io.StringIO], list[dict[str, Any]]],
) -> None:
    # One release at once, one more every 0.5 s: the 429 says Retry-After: 1.
    async for peers in _serve(make_authority, make_shares, allowed=("unsealer-a",), burst=1,
                              refill_seconds=0.5):
        patient = peers.client(rate_limit_patience=5.0)
        assert await patient.fetch(pod="vault-0") == peers.shares
        began = time.monotonic()
        assert await patient.fetch(pod="vault-0") == peers.shares  # after waiting its turn
        assert time.monotonic() - began >= 0.9
        # Waiting is bounded by the patience: a Retry-After beyond it fails the fetch.
        with pytest.raises(CustodyError, match=r"refused \(429\)"):
            await peers.client(rate_limit_patience=0.5).fetch(pod="vault-0")
    events = [(e["event"], e.get("reason")) for e in log_events(logs)
              if e["event"].startswith("custody.peer.re")]
    # The waiting client asked once per Retry-After, not in a loop; the limit held.
    assert events == [("custody.peer.released", None), ("custody.peer.refused", "rate limited"),
                      ("custody.peer.released", None), ("custody.peer.refused", "rate limited")]


async def test_releases_to_an_authenticated_peer_for_a_sealed_pod(
    peers: Peers,
    logs: io.StringIO,
    log_events: Callable[[io.StringIO], list[dict[str, Any]]],
    assert_no_leak: Any,
) -> None:
    client = peers.client()
    fetched = await client.fetch(pod="vault-0")
    assert fetched == peers.shares
    assert [s.origin for s in fetched] == ["node-b/1", "node-b/2"]
    [released] = [e for e in log_events(logs) if e["event"] == "custody.peer.released"]
    assert released["peer"] == "unsealer-a" and released["pod"] == "vault-0"
    assert released["fingerprints"] == [s.fingerprint(peers.key) for s in peers.shares]
    assert_no_leak(logs.getvalue() + repr(client), peers.shares)


async def test_refuses_while_the_pod_is_not_sealed(
    peers: Peers,
    logs: io.StringIO,
    log_events: Callable[[io.StringIO], list[dict[str, Any]]],
) -> None:
    with pytest.raises(CustodyError, match=r"refused \(409\): the pod is not sealed here"):
        await peers.client().fetch(pod="vault-1")
    [refusal] = [e for e in log_events(logs) if e["event"] == "custody.peer.refused"]
    assert (refusal["peer"], refusal["pod"], refusal["reason"]) == (
        "unsealer-a", "vault-1", "pod not sealed",
    )
    peers.sealed["vault-1"] = True  # the server asks every time
    assert await peers.client().fetch(pod="vault-1") == peers.shares


async def test_refuses_when_it_cannot_tell(peers: Peers) -> None:
    with pytest.raises(CustodyError, match=r"refused \(503\)"):
        await peers.client().fetch(pod="vault-9")
    with pytest.raises(CustodyError, match=r"refused \(400\)"):
        await peers.client().fetch(pod="Not A Pod/..")


async def test_refuses_a_client_certificate_from_another_ca(peers: Peers) -> None:
    rogue = peers.make_authority("rogue")
    with pytest.raises(CustodyError, match="unreachable or refused TLS"):
        await peers.client(rogue).fetch(pod="vault-0")


async def test_refuses_a_client_without_a_certificate(peers: Peers) -> None:
    anonymous = ssl.create_default_context(cafile=str(peers.authority.ca_file))
    with pytest.raises(CustodyError, match="unreachable or refused TLS"):
        await peers.with_context(anonymous).fetch(pod="vault-0")


async def test_client_refuses_a_server_from_another_ca(peers: Peers) -> None:
    rogue = peers.make_authority("rogue")
    cert, key = peers.authority.issue("unsealer-a")
    context = client_ssl_context(ca_file=rogue.ca_file, cert_file=cert, key_file=key)
    with pytest.raises(CustodyError, match="unreachable or refused TLS"):
        await peers.with_context(context).fetch(pod="vault-0")


async def test_client_pins_the_server_name(peers: Peers) -> None:
    assert await peers.client(server_name="unsealer-b").fetch(pod="vault-0") == peers.shares
    with pytest.raises(CustodyError, match="unreachable or refused TLS"):
        await peers.client(server_name="unsealer-c").fetch(pod="vault-0")


async def test_server_pins_peer_names(peers: Peers) -> None:
    assert await peers.client(cn="unsealer-a").fetch(pod="vault-0") == peers.shares
    with pytest.raises(CustodyError, match=r"refused \(403\): this peer is not allowed"):
        await peers.client(cn="unsealer-x").fetch(pod="vault-0")


async def test_peer_needs_a_pod_and_cannot_store(peers: Peers) -> None:
    client = peers.client()
    with pytest.raises(CustodyError, match="only to unseal a named pod"):
        await client.fetch()
    with pytest.raises(CustodyError, match="stored on the peer"):
        await client.store(peers.shares)
