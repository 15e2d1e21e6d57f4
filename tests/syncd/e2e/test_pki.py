"""VaultPKISecret end to end, against the Vault emulation's pki engine.

Certificates live seconds here and real time passes: syncd schedules from its own clock, and
the emulation's is the wall clock. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, POLICY, World

PKI_POLICY = POLICY + """
path "pki/issue/*" { capabilities = ["update"] }
path "pki/revoke" { capabilities = ["update"] }
"""
TLS = "kubernetes.io/tls"


async def _pki(world: World, *, ttl: str = "1h") -> str:
    """A pki engine with an EC root CA and role ``web`` (subdomains of example.com); the CA's
    PEM."""
    client = world.vault_client()
    await world.vault_call(client.sys.enable_secrets_engine, "pki")
    root = await world.vault_call(
        client.secrets.pki.generate_root, "internal", "Testbed Root CA",
        extra_params={"key_type": "ec", "ttl": "87600h"})
    await world.vault_call(client.secrets.pki.create_or_update_role, "web", extra_params={
        "allowed_domains": ["example.com"], "allow_subdomains": True, "key_type": "ec",
        "key_bits": 256, "ttl": ttl, "max_ttl": "24h"})
    await world.set_policy(PKI_POLICY)
    return str(root["data"]["certificate"])


def _vps(world: World, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"mount": "pki", "role": "web", "commonName": "app.example.com",
                            "destination": {"name": name, "create": True, "type": TLS}}
    body.update(spec)
    return world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultPKISecret",
                        "metadata": {"name": name, "namespace": APP_NS}, "spec": body})


def _get(world: World, name: str) -> dict[str, Any] | None:
    return world.kube.admin.get(GROUP_VERSION, "VaultPKISecret", name, APP_NS)


def _status(world: World, name: str) -> dict[str, Any]:
    return dict((_get(world, name) or {}).get("status") or {})


def _ready(world: World, name: str) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in _status(world, name).get("conditions") or [])


def _tls(world: World, name: str) -> tuple[list[x509.Certificate], Any]:
    """The certificates of tls.crt in order, and the private key of tls.key."""
    secret = world.secret(name) or {}
    crt = base64.b64decode(secret["data"]["tls.crt"])
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    world.remember(key_pem.decode().replace("-----BEGIN EC PRIVATE KEY-----", "").strip())
    return (x509.load_pem_x509_certificates(crt),
            serialization.load_pem_private_key(key_pem, password=None))


def _unchanged(world: World) -> int:
    """Reconciles of a VaultPKISecret that found nothing to do."""
    return len([s for s in world.spans_named("reconcile")
                if "syncd.vps.name" in (s.attributes or {})
                and (s.attributes or {}).get("syncd.outcome") == "Unchanged"])


def _spans(world: World, name: str) -> int:
    return len([s for s in world.spans_named(name)
                if (s.attributes or {}).get("syncd.result") == "ok"])


async def _revoked(world: World, serial: str) -> bool:
    client = world.vault_client()
    reply = await world.vault_call(client.secrets.pki.read_certificate, serial)
    return bool(reply["data"].get("revocation_time"))


def _no_leaks(world: World) -> None:
    statuses = json.dumps([v.get("status") for v in
                           world.kube.admin.list(GROUP_VERSION, "VaultPKISecret")])
    leaked = world.leaks([world.captured(), json.dumps(world.all_events()), statuses])
    assert not leaked, leaked


async def test_tls_secret_verifies_against_the_ca(world: World) -> None:
    ca_pem = await _pki(world)
    _vps(world, "tls", altNames=["www.example.com"])
    world.start_syncd()
    await world.eventually(lambda: _ready(world, "tls"), message="tls synced")

    chain, key = _tls(world, "tls")
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    leaf = chain[0]
    assert chain[1:] == [ca]  # the certificate, then the chain
    leaf.verify_directly_issued_by(ca)  # raises if the signature or the issuer do not match
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"app.example.com", "www.example.com"}
    status = _status(world, "tls")
    assert int(status["serialNumber"].replace(":", ""), 16) == leaf.serial_number
    assert status["expiration"] == int(leaf.not_valid_after_utc.timestamp())
    assert (world.secret("tls") or {})["type"] == TLS
    _no_leaks(world)


async def test_reissued_expiry_offset_before_expiry_with_one_restart(world: World) -> None:
    await _pki(world)
    world.workload("Deployment", "web", secret="tls")
    _vps(world, "tls", ttl="12s", expiryOffset="5s", revoke=True,
         rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()
    await world.eventually(lambda: _ready(world, "tls"), message="tls synced")
    first = _status(world, "tls")
    old_serial, old_expiration = first["serialNumber"], first["expiration"]

    await world.eventually(lambda: _status(world, "tls").get("serialNumber") != old_serial,
                           deadline=15, message="re-issued")
    second = _status(world, "tls")
    # expiryOffset (5 s) before expiry, less a jitter of at most 1.2 s (a tenth of 12 s),
    # give or take the second the status rounds to.
    assert old_expiration - 5 - 1.2 - 1 <= second["lastRotation"] <= old_expiration - 5 + 1
    assert second["expiration"] > old_expiration
    [leaf, *_], _ = _tls(world, "tls")
    assert int(leaf.not_valid_after_utc.timestamp()) == second["expiration"]
    await world.eventually(lambda: world.restarts("web") == 1, message="one restart")
    assert await _revoked(world, old_serial)
    assert _spans(world, "vault.certificate.issue") == 2
    await world.eventually(lambda: world.events("SecretRotated", about="tls"),
                           message="a SecretRotated Event")
    metric = world.metric("syncd.vault.leases")
    assert metric[(("operation", "certificate.revoke"), ("result", "ok"))] == 1
    _no_leaks(world)


async def test_role_refusing_the_common_name_is_a_condition_and_nothing_written(
    world: World,
) -> None:
    await _pki(world)
    _vps(world, "evil", commonName="evil.other.org")
    world.start_syncd()

    def refused() -> dict[str, Any] | None:
        return next((c for c in _status(world, "evil").get("conditions") or []
                     if c["type"] == "Ready" and c["status"] == "False"), None)

    condition = await world.eventually(refused, message="evil: Ready False")
    assert condition["reason"] == "VaultRequestRefused"
    assert "common name evil.other.org not allowed by this role" in condition["message"]
    assert world.secret("evil") is None
    # The Event follows the status write.
    await world.eventually(lambda: world.events("VaultRequestRefused", about="evil"),
                           message="a VaultRequestRefused Event")


async def test_spec_change_reissues_at_once_and_a_restart_does_not(world: World) -> None:
    await _pki(world)
    _vps(world, "tls")
    first_run = world.start_syncd()
    await world.eventually(lambda: _ready(world, "tls"), message="tls synced")
    serial = _status(world, "tls")["serialNumber"]

    looked = _unchanged(world)
    await world.stop_one(first_run, crash=True)
    world.start_syncd()
    await world.eventually(lambda: _unchanged(world) > looked,
                           message="the new process looked at it")
    assert _spans(world, "vault.certificate.issue") == 1
    assert _status(world, "tls")["serialNumber"] == serial

    _vps(world, "tls", commonName="api.example.com")
    await world.eventually(lambda: _status(world, "tls").get("serialNumber") != serial,
                           message="re-issued for the new spec")
    [leaf, *_], _ = _tls(world, "tls")
    assert leaf.subject.rfc4514_string() == "CN=api.example.com"
    # Two certificates in all: the restart in between issued none.
    assert _spans(world, "vault.certificate.issue") == 2


async def test_deletion_with_revoke_revokes_the_certificate(world: World) -> None:
    await _pki(world)
    _vps(world, "tls", revoke=True)
    world.start_syncd()
    await world.eventually(lambda: _ready(world, "tls"), message="tls synced")
    serial = _status(world, "tls")["serialNumber"]
    assert not await _revoked(world, serial)

    world.kube.admin.delete(GROUP_VERSION, "VaultPKISecret", "tls", APP_NS)
    await world.eventually(lambda: _get(world, "tls") is None, message="the object gone")
    assert await _revoked(world, serial)


async def test_a_certificate_found_expired_is_replaced_at_once(world: World) -> None:
    """syncd was down past the expiry: the first reconcile re-issues, whatever the offset."""
    await _pki(world)
    _vps(world, "tls", ttl="3s")
    first_run = world.start_syncd()
    await world.eventually(lambda: _ready(world, "tls"), message="tls synced")
    expired = _status(world, "tls")
    await world.stop_one(first_run)
    await world.eventually(lambda: time.time() > expired["expiration"], deadline=6,
                           message="the certificate expired")

    world.start_syncd()
    await world.eventually(lambda: _status(world, "tls").get("serialNumber")
                           != expired["serialNumber"], message="replaced")
    [leaf, *_], _ = _tls(world, "tls")
    assert leaf.not_valid_after_utc.timestamp() > time.time()


async def test_pem_bundle_tls_secret_has_each_certificate_once(world: World) -> None:
    ca_pem = await _pki(world)
    _vps(world, "tls", format="pem_bundle")
    world.start_syncd()
    await world.eventually(lambda: _ready(world, "tls"), message="tls synced")
    chain, _ = _tls(world, "tls")
    assert len(chain) == 2
    assert chain[1] == x509.load_pem_x509_certificate(ca_pem.encode())
    chain[0].verify_directly_issued_by(chain[1])
