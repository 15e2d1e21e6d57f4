"""The peer custodian end to end: two real unsealer services, mutual TLS, one Vault.

Unsealer A holds two shares in a Kubernetes Secret and knows that unsealer B holds two more
(a ``peer`` custodian); B holds them in a 0600 file and releases them through its peer server,
over mutual TLS with certificates made here, only while B's *own* view of the pod says sealed.
Neither alone reaches the threshold of 3; together they do.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.pki import Authority
from tests.unsealer.e2e.world import CUSTODY_NS, VAULT_NS, World, free_port
from unsealer.custody import CustodyError, check_invariant, static_holdings
from unsealer.custody.config import CustodyConfigError, parse_config
from unsealer.custody.peer import PeerCustodian, client_ssl_context
from unsealer.shares import FingerprintKey, Share

THRESHOLD = 3
B_FINGERPRINT_KEY = bytes(range(32))


# --- certificates -----------------------------------------------------------------------------


# --- the two unsealers ------------------------------------------------------------------------


@dataclass
class Pair:
    """Unsealer A (Secret + peer) and unsealer B (file, released through its peer server)."""

    world: World
    authority: Authority
    directory: Path
    port: int
    a_config: dict[str, Any]
    b_config: dict[str, Any]

    def start_a(self) -> asyncio.Task[None]:
        path = self.directory / "custody-a.yaml"
        path.write_text(yaml.safe_dump(self.a_config))
        return self.world.start_unsealer(
            dataclasses.replace(self.world.settings, custody_config=str(path))
        )

    def start_b(self) -> asyncio.Task[None]:
        path = self.directory / "custody-b.yaml"
        path.write_text(yaml.safe_dump(self.b_config))
        # B never reaches the threshold on its own: it runs peer-only (serves its peer
        # server, never unseals); its peer server asks Vault at every request.
        return self.world.start_unsealer(
            dataclasses.replace(
                self.world.settings, custody_config=str(path), peer_only=True,
                fingerprint_key=B_FINGERPRINT_KEY,
            )
        )

    def client(self, authority: Authority | None = None, *, cn: str) -> PeerCustodian:
        """A peer client with a certificate for ``cn`` from ``authority`` (default: ours)."""
        cert, key = (authority or self.authority).issue(cn)
        context = client_ssl_context(ca_file=self.authority.ca_file, cert_file=cert, key_file=key)
        return PeerCustodian(
            name="probe", url=f"https://127.0.0.1:{self.port}", ssl_context=context,
            server_name="unsealer-b",
        )

    def log_events(self, event: str) -> list[dict[str, Any]]:
        return self.world.log_records(event)

    def releases(self, pod: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.log_events("custody.peer.released")
                if pod is None or r.get("pod") == pod]

    async def until(
        self, predicate: Any, *, tasks: tuple[asyncio.Task[None], ...], message: str
    ) -> Any:
        """``world.eventually``, failing at once if an unsealer ended (e.g. a refused config)."""

        def check() -> Any:
            for task in tasks:
                if task.done():
                    raise AssertionError(f"an unsealer stopped: {task!r}") from task.exception()
            return predicate()

        return await self.world.eventually(check, message=message)


@pytest.fixture
def pair(world: World, tmp_path: Path) -> Pair:
    directory = tmp_path / "peer"
    directory.mkdir()
    authority = Authority.create("peer", directory)
    server_cert, server_key = authority.issue("unsealer-b", server=True, ips=("127.0.0.1",))
    client_cert, client_key = authority.issue("unsealer-a")
    port = free_port()
    a_config = {
        "threshold": THRESHOLD, "shares": 5,
        "custodians": [
            # keys 1 and 2 (the world's Secret)
            {"name": "kube-a", "kind": "kubernetesSecret", "namespace": CUSTODY_NS,
             "secretName": "unseal-shares", "shares": 2},
            # keys 3 and 4, on B
            {"name": "node-b", "kind": "peer", "url": f"https://127.0.0.1:{port}",
             "caFile": str(authority.ca_file), "certFile": str(client_cert),
             "keyFile": str(client_key), "serverName": "unsealer-b", "timeoutSeconds": 5,
             "shares": 2},
        ],
    }
    b_config = {
        "threshold": THRESHOLD, "shares": 5,
        "custodians": [
            # keys 3 and 4 (the world's 0600 share file)
            {"name": "disk", "kind": "file", "path": str(world.share_file), "shares": 2},
        ],
        "peerServer": {
            "host": "127.0.0.1", "port": port, "caFile": str(authority.ca_file),
            "certFile": str(server_cert), "keyFile": str(server_key),
            "allowedPeers": ["unsealer-a"], "releases": ["disk"],
        },
    }
    return Pair(world, authority, directory, port, a_config, b_config)


def _all_forms(keys: list[bytes]) -> list[str]:
    forms = []
    for key in keys:
        encoded = base64.b64encode(key).decode()
        forms += [key.hex(), key.hex().upper(), encoded, encoded.rstrip("="),
                  base64.urlsafe_b64encode(key).decode().rstrip("=")]
    return forms


# --- the scenario -----------------------------------------------------------------------------


def test_the_layout_keeps_the_invariant(pair: Pair) -> None:
    # Peers count by their configured `shares`: 2 + 2 on A's side, 2 on B's; threshold 3.
    for document in (pair.a_config, pair.b_config):
        config = parse_config(document, source="test", vault_namespace=VAULT_NS)
        holdings, unverified = static_holdings(config)
        report = check_invariant(holdings, threshold=THRESHOLD, unverified=unverified)
        assert report.ok and not report.unverified, report
    a = parse_config(pair.a_config, source="a", vault_namespace=VAULT_NS)
    assert check_invariant(static_holdings(a)[0], threshold=THRESHOLD).sufficient


async def test_a_unseals_with_shares_released_by_b_over_mutual_tls(pair: Pair) -> None:
    world = pair.world

    # A alone: 2 of the 3 shares, B unreachable. It says so, and keeps trying.
    a = pair.start_a()
    failure = await pair.until(
        lambda: [e for e in world.events("UnsealFailed") if "node-b" in e["message"]],
        tasks=(a,), message="A fails without B",
    )
    assert "2 of the 3 shares" in failure[0]["message"]
    assert all(world.sealed(n) for n in range(3))
    assert "custody.invariant.holds" in world.logs.getvalue()

    # B comes up: A's retries fetch B's shares over mTLS, and every pod unseals.
    b = pair.start_b()
    await pair.until(lambda: pair.log_events("custody.peer.listening"), tasks=(a, b),
                     message="B's peer server listening")
    await pair.until(lambda: not any(world.sealed(n) for n in range(3)), tasks=(a, b),
                     message="vault-0..2 unsealed with B's shares")
    assert {r["pod"] for r in pair.releases()} == {"vault-0", "vault-1", "vault-2"}

    # vault-0 restarts sealed: A asks B again, B checks its own view and releases.
    before = len(pair.releases("vault-0"))
    await world.restart_vault(0)
    assert world.sealed(0)
    await pair.until(lambda: not world.sealed(0), tasks=(a, b), message="vault-0 unsealed")
    releases = pair.releases("vault-0")
    assert len(releases) > before
    # Who, which pod, fingerprints (B's key): nothing more.
    key = FingerprintKey(B_FINGERPRINT_KEY)
    expected = [Share(world.keys[2]).fingerprint(key), Share(world.keys[3]).fingerprint(key)]
    for release in releases:
        assert release["peer"] == "unsealer-a" and release["count"] == 2
        assert release["fingerprints"] == expected
        assert "shares" not in release
    unsealed = await world.eventually(
        lambda: [e for e in world.events("Unsealed")
                 if e["involvedObject"]["name"] == "vault-0" and "node-b" in e["message"]],
        message="A's Unsealed Event naming node-b",
    )
    assert "kube-a" in unsealed[0]["message"]

    # The pod is unsealed now: B refuses, whoever asks, and says why.
    refusals = len(pair.log_events("custody.peer.refused"))
    with pytest.raises(CustodyError, match=r"refused \(409\): the pod is not sealed here"):
        await pair.client(cn="unsealer-a").fetch(pod="vault-0")
    [refusal] = pair.log_events("custody.peer.refused")[refusals:]
    assert (refusal["peer"], refusal["pod"], refusal["reason"]) == (
        "unsealer-a", "vault-0", "pod not sealed",
    )
    assert len(pair.releases("vault-0")) == len(releases)

    # A certificate from our CA for a name B does not allow: 403.
    with pytest.raises(CustodyError, match=r"refused \(403\): this peer is not allowed"):
        await pair.client(cn="unsealer-x").fetch(pod="vault-0")

    # A client certificate from another CA never gets past the handshake: B's handler never
    # runs, so it neither releases nor even logs a refusal.
    rogue = Authority.create("rogue", pair.directory)
    handled = len(pair.log_events("custody.peer.refused")) + len(pair.releases())
    with pytest.raises(CustodyError, match="unreachable or refused TLS") as caught:
        await pair.client(rogue, cn="unsealer-a").fetch(pod="vault-0")
    assert len(pair.log_events("custody.peer.refused")) + len(pair.releases()) == handled

    # Everything captured (both services' logs, spans, Events) and the errors: no share.
    text = world.captured() + str(caught.value)
    for form in _all_forms(world.keys):
        assert form not in text
    assert not [e for e in world.events("Unsealed") if "disk" in e["message"]]
    # B, peer-only, never tried to unseal: every failure reported is A's, missing B.
    assert all("node-b" in e["message"] for e in world.events("UnsealFailed"))
    assert '"mode": "peer only"' in world.logs.getvalue()
    assert not a.done() and not b.done()


async def test_a_peer_server_without_allowed_peers_does_not_start(pair: Pair) -> None:
    # Any certificate the peer CA ever signed would otherwise receive B's shares.
    del pair.b_config["peerServer"]["allowedPeers"]
    b = pair.start_b()
    with pytest.raises(CustodyConfigError, match="peerServer: field 'allowedPeers': is required"):
        await asyncio.wait_for(b, 10)
    pair.world.tasks.remove(b)
    assert not pair.log_events("custody.peer.listening")


async def test_b_releases_nothing_for_a_pod_that_is_not_vaults(pair: Pair) -> None:
    # A's certificate is allowed, but the pod it asks about is a rogue one: a pod with Vault's
    # labels that the StatefulSet does not own, answering sealed at its IP (with a certificate
    # from Vault's CA for its own name). B checks the pod itself and releases nothing.
    from tests.unsealer.e2e.rogue import RogueVault
    from tests.unsealer.e2e.test_identity import ROGUE_IP, create_rogue_pod

    world = pair.world
    assert world.vault.tls is not None
    files = world.vault.tls.issue("intruder", names=["vault-3.vault-internal.vault.svc"],
                                  ips=[ROGUE_IP])
    async with RogueVault(ROGUE_IP, world.port, files.server_context()) as rogue:
        await create_rogue_pod(world)
        b = pair.start_b()
        await pair.until(lambda: pair.log_events("custody.peer.listening"), tasks=(b,),
                         message="B's peer server listening")
        with pytest.raises(CustodyError, match=r"refused \(503\)"):
            await pair.client(cn="unsealer-a").fetch(pod="vault-3")
        assert rogue.requests == []
    [refusal] = pair.log_events("custody.peer.refused")
    assert (refusal["peer"], refusal["pod"]) == ("unsealer-a", "vault-3")
    assert "not a pod of StatefulSet 'vault'" in refusal["error"]
    assert pair.releases() == []
    # And a real pod that is not sealed: nothing either (409), as before.
    world.vault.admin.unseal(world.keys[:3], node=0)
    with pytest.raises(CustodyError, match=r"refused \(409\)"):
        await pair.client(cn="unsealer-a").fetch(pod="vault-0")
    assert pair.releases() == []


async def test_b_is_not_asked_while_its_shares_could_not_complete_the_set(pair: Pair) -> None:
    # A's own Secret is refused (403): B's two shares alone are 2 of 3. Each retry of A would
    # have B release them over the network for nothing; A does not ask until they can count.
    world = pair.world
    world.kube.faults.error(403, resource="secrets", namespace=CUSTODY_NS)
    b = pair.start_b()
    await pair.until(lambda: pair.log_events("custody.peer.listening"), tasks=(b,),
                     message="B's peer server listening")
    a = pair.start_a()
    failures = await pair.until(
        lambda: [e for e in world.events("UnsealFailed") if "not asked" in e["message"]],
        tasks=(a, b), message="A fails, saying it did not ask B",
    )
    assert "0 of the 3 shares" in failures[0]["message"]
    assert "node-b" in failures[0]["message"].split("not asked", 1)[1]
    # A few retries later (seal-status read again each time), still nothing from B.
    before = world.vault.admin.request_count(method="GET", path="/v1/sys/seal-status")
    await pair.until(
        lambda: world.vault.admin.request_count(method="GET", path="/v1/sys/seal-status")
        >= before + 6, tasks=(a, b), message="a few retries")
    assert pair.releases() == [] and pair.log_events("custody.peer.refused") == []
    assert all(world.sealed(n) for n in range(3))
    world.kube.faults.clear()  # the Secret is back: 2 + B's 2
    await pair.until(lambda: not any(world.sealed(n) for n in range(3)), tasks=(a, b),
                     message="unsealed once B's shares complete the set")
    assert {r["pod"] for r in pair.releases()} == {"vault-0", "vault-1", "vault-2"}


async def test_the_configured_rate_limit_is_what_a_peer_gets(pair: Pair) -> None:
    # `peerServer.rateLimit`: one release, then one an hour. A holder of an allowed
    # certificate asking again (the hostile party: a stolen peer key) is refused with 429 and
    # gets nothing more, however the pod stays sealed.
    world = pair.world
    pair.b_config["peerServer"]["rateLimit"] = {"burst": 1, "refillSeconds": 3600}
    b = pair.start_b()
    await pair.until(lambda: pair.log_events("custody.peer.listening"), tasks=(b,),
                     message="B's peer server listening")
    assert world.sealed(0)
    thief = pair.client(cn="unsealer-a")
    assert len(await thief.fetch(pod="vault-0")) == 2
    with pytest.raises(CustodyError, match=r"refused \(429\)"):
        await thief.fetch(pod="vault-0")
    assert [r["pod"] for r in pair.releases()] == ["vault-0"]
    [refusal] = pair.log_events("custody.peer.refused")
    assert refusal["reason"] == "rate limited"


@pytest.mark.parametrize(("limit", "says"), [
    ({"burst": 0}, "'burst': must be between 1 and 255"),
    ({"burst": 10_000}, "'burst': must be between 1 and 255"),
    ({"refillSeconds": 0}, "'refillSeconds': must be a number greater than 0"),
    ({"refillSeconds": 86_400}, "'refillSeconds': must be at most 3600"),
    ({"perMinute": 5}, "rateLimit: unknown field"),
])
def test_a_rate_limit_out_of_bounds_is_refused_naming_the_field(
    pair: Pair, limit: dict[str, int], says: str
) -> None:
    # The limit bounds what one stolen certificate takes: it can be tuned, never switched off.
    pair.b_config["peerServer"]["rateLimit"] = limit
    with pytest.raises(CustodyConfigError, match=re.escape(says)) as caught:
        parse_config(pair.b_config, source="b", vault_namespace=VAULT_NS)
    assert "peerServer: rateLimit" in str(caught.value)
