"""VaultPKISecret: the spec, the re-issue schedule (from the status alone), tls.crt/tls.key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from syncd.pki import MAX_JITTER_SECONDS, due, tls_data
from syncd.pki_specs import SpecError, parse_vault_pki_secret

Obj = dict[str, Any]
ISSUED = 1_000_000


def vps(**spec: Any) -> Obj:
    base: Obj = {"mount": "pki", "role": "web", "commonName": "app.example.com",
                 "destination": {"name": "tls"}}
    base.update(spec)
    return {"apiVersion": "secrets.vault-syncd.dev/v1beta1", "kind": "VaultPKISecret",
            "metadata": {"name": "web", "namespace": "app", "generation": 1, "uid": "u1"},
            "spec": base}


def test_defaults_and_the_request(defaulted: Callable[[Obj], Obj]) -> None:
    spec = parse_vault_pki_secret(vps(altNames=["a.example.com", "b.example.com"],
                                      ipSans=["10.0.0.1"], ttl="72h", excludeCNFromSans=True))
    assert (spec.format, spec.private_key_format, spec.expiry_offset_seconds) == ("pem", "der", 0)
    assert spec.request() == {
        "format": "pem", "private_key_format": "der", "common_name": "app.example.com",
        "ttl": "72h", "alt_names": "a.example.com,b.example.com", "ip_sans": "10.0.0.1",
        "exclude_cn_from_sans": True}
    assert parse_vault_pki_secret(defaulted(vps())) == parse_vault_pki_secret(vps())


@pytest.mark.parametrize(("change", "field"), [
    ({"role": "a/b"}, "spec.role"),
    ({"ipSans": ["not-an-ip"]}, "spec.ipSans[0]"),
    ({"format": "p12"}, "spec.format"),
    ({"privateKeyFormat": "pem"}, "spec.privateKeyFormat"),
    ({"notAfter": "tomorrow"}, "spec.notAfter"),
    ({"notAfter": "2030-01-01T00:00:00"}, "spec.notAfter"),
    ({"expiryOffset": "a while"}, "spec.expiryOffset"),
    ({"ttl": "1 day"}, "spec.ttl"),
    ({"issuerRef": "../x"}, "spec.issuerRef"),
    ({"format": "der", "destination": {"name": "t", "create": True,
                                       "type": "kubernetes.io/tls"}}, "spec.format"),
])
def test_invalid_fields_are_named(change: Obj, field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_vault_pki_secret(vps(**change))
    assert field in str(error.value)
    assert "VaultPKISecret app/web" in str(error.value)


def status(*, life: int = 3600, serial: str = "01:02") -> Obj:
    return {"lastRotation": ISSUED, "expiration": ISSUED + life, "serialNumber": serial}


def test_reissue_expiry_offset_before_expiry_less_a_bounded_jitter() -> None:
    at = due(status=status(), offset=600, uid="u1")
    assert at is not None
    assert ISSUED + 3600 - 600 - MAX_JITTER_SECONDS <= at <= ISSUED + 3600 - 600
    # The same status, the same time: a restarted syncd keeps the schedule.
    assert due(status=status(), offset=600, uid="u1") == at
    # Objects (and certificates) apart are spread apart.
    others = {due(status=status(serial=f"0{i}"), offset=600, uid="u1") for i in range(8)}
    assert len(others) == 8


def test_short_certificates_jitter_at_most_a_tenth_of_their_life() -> None:
    at = due(status=status(life=12), offset=5, uid="u1")
    assert at is not None
    assert ISSUED + 12 - 5 - 1.2 <= at <= ISSUED + 12 - 5


def test_an_offset_longer_than_the_life_does_not_loop() -> None:
    at = due(status=status(life=100), offset=1000, uid="u1")
    assert at == ISSUED + 25


def test_no_certificate_no_schedule() -> None:
    assert due(status={}, offset=0, uid="u1") is None


def test_tls_crt_is_the_certificate_then_the_chain() -> None:
    cert = "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----"
    ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----"
    key = "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----"
    assert tls_data({"certificate": cert, "ca_chain": [ca], "private_key": key}) == {
        "tls.crt": f"{cert}\n{ca}\n", "tls.key": key}
    # pem_bundle puts the key and the chain into "certificate": tls.crt keeps the
    # certificates, each once.
    bundle = tls_data({"certificate": f"{key}\n{cert}\n{ca}", "ca_chain": [ca],
                       "private_key": key})
    assert bundle["tls.crt"] == f"{cert}\n{ca}\n"
