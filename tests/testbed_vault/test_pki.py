"""The pki engine through hvac: root CA, role constraints and refusals, issuing, revoking.

EC P-256 keys throughout (RSA once), so issuing stays cheap on a small machine.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hvac import exceptions

from testbed.vault import running_vault

from .conftest import ReadyVault, in_thread

ROLE = {
    "allowed_domains": ["example.com"],
    "allow_subdomains": True,
    "key_type": "ec",
    "key_bits": 256,
    "ttl": "1h",
    "max_ttl": "24h",
}


async def _setup(root: hvac.Client) -> dict[str, Any]:
    await in_thread(root.sys.enable_secrets_engine, "pki")
    generated: dict[str, Any] = await in_thread(
        root.secrets.pki.generate_root,
        "internal",
        "Testbed Root CA",
        extra_params={"key_type": "ec", "ttl": "87600h", "issuer_name": "root-2026"},
    )
    await in_thread(root.secrets.pki.create_or_update_role, "web", extra_params=ROLE)
    return generated


@pytest.fixture
async def pki(root: hvac.Client) -> dict[str, Any]:
    """``root`` with pki at ``pki/``: an EC root CA and role ``web`` (subdomains of example.com)."""
    return await _setup(root)


async def _issue(client: hvac.Client, common_name: str, role: str = "web",
                 **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await in_thread(
        client.secrets.pki.generate_certificate, role, common_name, extra_params=params
    )
    return result


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _sans(certificate: x509.Certificate) -> x509.SubjectAlternativeName:
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


async def test_root_generate(root: hvac.Client, pki: dict[str, Any]) -> None:
    data = pki["data"]
    ca = _cert(data["certificate"])
    assert data["issuing_ca"] == data["certificate"]
    assert "private_key" not in data  # internal: the key never leaves
    assert ca.subject.rfc4514_string() == "CN=Testbed Root CA"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert data["serial_number"] == ":".join(f"{b:02x}" for b in ca.serial_number.to_bytes(
        (ca.serial_number.bit_length() + 7) // 8, "big"))
    assert data["expiration"] == int(ca.not_valid_after_utc.timestamp())
    assert data["issuer_name"] == "root-2026"
    ca.verify_directly_issued_by(ca)
    exported = await in_thread(root.secrets.pki.generate_root, "exported", "Second CA",
                               extra_params={"key_type": "ec"})
    assert exported["data"]["private_key"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert exported["data"]["private_key_type"] == "ec"


async def test_issue_returns_a_certificate_the_ca_signed(
    vault_ready: ReadyVault, root: hvac.Client, pki: dict[str, Any]
) -> None:
    issued = await _issue(root, "app.example.com", alt_names="api.example.com,*.web.example.com",
                          ip_sans="10.0.0.7", uri_sans="")
    data = issued["data"]
    assert issued["lease_id"] == "" and issued["renewable"] is False
    certificate = _cert(data["certificate"])
    ca = _cert(pki["data"]["certificate"])
    certificate.verify_directly_issued_by(ca)
    assert data["issuing_ca"] == pki["data"]["certificate"]
    assert data["ca_chain"] == [pki["data"]["certificate"]]
    assert data["private_key_type"] == "ec"
    key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == certificate.public_key().public_numbers()
    assert data["private_key"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert not data["certificate"].endswith("\n")  # Vault trims its PEM fields
    serial = certificate.serial_number
    assert data["serial_number"] == ":".join(
        f"{b:02x}" for b in serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
    assert data["expiration"] == int(certificate.not_valid_after_utc.timestamp())
    assert certificate.subject.rfc4514_string() == "CN=app.example.com"
    sans = _sans(certificate)
    assert sans.get_values_for_type(x509.DNSName) == [
        "app.example.com", "api.example.com", "*.web.example.com"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    # Validity on the emulation's clock: 30 s back-dated, the role's 1 h TTL.
    now = vault_ready.vault.core.clock.now()
    assert abs(certificate.not_valid_before_utc.timestamp() - (now - 30)) < 3
    assert abs(certificate.not_valid_after_utc.timestamp() - (now + 3600)) < 3


async def test_issued_certificate_passes_openssl_verify(
    tmp_path: Path, root: hvac.Client, pki: dict[str, Any]
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary on this machine (the cryptography check still ran above)")
    issued = await _issue(root, "app.example.com")
    (tmp_path / "ca.pem").write_text(issued["data"]["issuing_ca"] + "\n")
    (tmp_path / "leaf.pem").write_text(issued["data"]["certificate"] + "\n")
    # The emulation's clock may run ahead of the machine's; verify at the certificate's time.
    at = int(_cert(issued["data"]["certificate"]).not_valid_before_utc.timestamp()) + 60
    result = await in_thread(
        subprocess.run,
        [openssl, "verify", "-attime", str(at), "-CAfile", str(tmp_path / "ca.pem"),
         "-purpose", "sslserver", str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"common_name": "evil.org"}, "common name evil.org not allowed by this role"),
        ({"common_name": "example.com"}, "common name example.com not allowed by this role"),
        ({"common_name": "a.example.com", "alt_names": "b.example.net"},
         "subject alternate name b.example.net not allowed by this role"),
        ({"common_name": "a.example.com", "uri_sans": "spiffe://example.com/a"},
         "URI Subject Alternative Names are not allowed in this role, but were provided via"),
        ({"common_name": "bad_name.example.com"},
         "common name bad_name.example.com not allowed by this role"),
        ({"common_name": "a.example.com", "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:a@b"},
         "other SAN OID 1.3.6.1.4.1.311.20.2.3 not allowed by this role"),
        ({"common_name": "a.example.com", "ttl": "1h", "not_after": "2030-01-01T00:00:00Z"},
         "Either ttl or not_after should be provided"),
        ({"common_name": "a.example.com", "not_after": "2199-01-01T00:00:00Z"},
         "beyond the expiration of the CA certificate"),
        ({"common_name": ""}, "the common_name field is required"),
    ],
)
async def test_refusals(
    vault_ready: ReadyVault, root: hvac.Client, pki: dict[str, Any], params: dict[str, Any],
    message: str,
) -> None:
    common_name = params.pop("common_name")
    with pytest.raises(exceptions.InvalidRequest) as raised:
        await _issue(root, common_name, **params)
    assert message in raised.value.errors[0]
    assert vault_ready.vault.admin.request_count(method="POST", path="/v1/pki/issue/web") == 1


async def test_role_constraints(root: hvac.Client, pki: dict[str, Any]) -> None:
    pki_api = root.secrets.pki
    await in_thread(pki_api.create_or_update_role, "bare", extra_params={
        **ROLE, "allow_subdomains": False, "allow_bare_domains": True, "allow_ip_sans": False})
    assert (await _issue(root, "example.com", role="bare"))["data"]["serial_number"]
    with pytest.raises(exceptions.InvalidRequest, match=r"common name a\.example\.com not allowed"):
        await _issue(root, "a.example.com", role="bare")
    with pytest.raises(exceptions.InvalidRequest, match=r"IP Subject Alternative Names are not "
                       r"allowed in this role, but was provided \[10.1.2.3\]"):
        await _issue(root, "example.com", role="bare", ip_sans="10.1.2.3")
    # allow_any_name still enforces hostname syntax, unless enforce_hostnames is off.
    await in_thread(pki_api.create_or_update_role, "any", extra_params={
        "allow_any_name": True, "key_type": "ec", "allowed_uri_sans": ["spiffe://cluster/*"],
        "allowed_other_sans": ["1.3.6.1.4.1.311.20.2.3;UTF8:*@example.com"]})
    issued = await _issue(root, "whatever.internal", role="any", uri_sans="spiffe://cluster/ns/a",
                          other_sans="1.3.6.1.4.1.311.20.2.3;UTF8:me@example.com")
    sans = _sans(_cert(issued["data"]["certificate"]))
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster/ns/a"]
    [other] = sans.get_values_for_type(x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    assert other.value.endswith(b"me@example.com")
    with pytest.raises(exceptions.InvalidRequest, match="common name not a hostname not allowed"):
        await _issue(root, "not a hostname", role="any")
    with pytest.raises(exceptions.InvalidRequest, match="URI Subject Alternative Names were "
                       "provided via the API which are not valid for this role"):
        await _issue(root, "a.internal", role="any", uri_sans="spiffe://x/y")
    with pytest.raises(exceptions.InvalidRequest, match=re.escape(
            "other SAN you@elsewhere.org not allowed for OID 1.3.6.1.4.1.311.20.2.3 by this role")):
        await _issue(root, "a.internal", role="any",
                     other_sans="1.3.6.1.4.1.311.20.2.3;UTF8:you@elsewhere.org")
    await in_thread(pki_api.create_or_update_role, "any", extra_params={"enforce_hostnames": False})
    loose = _cert((await _issue(root, "not a hostname", role="any"))["data"]["certificate"])
    assert loose.subject.rfc4514_string() == "CN=not a hostname"
    with pytest.raises(x509.ExtensionNotFound):  # such a CN does not become a DNS SAN
        _sans(loose)
    with pytest.raises(exceptions.InvalidRequest, match="unknown role: nope"):
        await _issue(root, "a.example.com", role="nope")


async def test_user_ids(root: hvac.Client, pki: dict[str, Any]) -> None:
    with pytest.raises(exceptions.InvalidRequest, match="user_id alice is not allowed by"):
        await _issue(root, "app.example.com", user_ids="alice")
    await in_thread(root.secrets.pki.create_or_update_role, "web",
                    extra_params={"allowed_user_ids": ["svc-*"]})
    issued = await _issue(root, "app.example.com", user_ids="svc-app")
    subject = _cert(issued["data"]["certificate"]).subject
    assert [a.value for a in subject.get_attributes_for_oid(x509.NameOID.USER_ID)] == ["svc-app"]


async def test_exclude_cn_from_sans(root: hvac.Client, pki: dict[str, Any]) -> None:
    issued = await _issue(root, "app.example.com", exclude_cn_from_sans=True,
                          alt_names="api.example.com")
    sans = _sans(_cert(issued["data"]["certificate"]))
    assert sans.get_values_for_type(x509.DNSName) == ["api.example.com"]


async def test_ttl_capped_by_max_ttl_and_not_after(root: hvac.Client,
                                                   pki: dict[str, Any]) -> None:
    issued = await _issue(root, "app.example.com", ttl="48h")
    assert issued["warnings"] == [
        'TTL "48h0m0s" is longer than permitted maxTTL "24h0m0s", so maxTTL is being used']
    certificate = _cert(issued["data"]["certificate"])
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == datetime.timedelta(hours=24, seconds=30)
    fixed = await _issue(root, "app.example.com", not_after="2030-06-01T12:00:00Z")
    assert fixed["data"]["expiration"] == int(
        datetime.datetime(2030, 6, 1, 12, tzinfo=datetime.UTC).timestamp())


async def test_validity_follows_the_emulation_clock(
    vault_ready: ReadyVault, root: hvac.Client, pki: dict[str, Any]
) -> None:
    first = _cert((await _issue(root, "app.example.com", ttl="10m"))["data"]["certificate"])
    vault_ready.vault.admin.advance_clock(3600)
    clock_now = datetime.datetime.fromtimestamp(vault_ready.vault.core.clock.now(), datetime.UTC)
    assert first.not_valid_after_utc < clock_now  # expired, as far as the emulation goes
    second = _cert((await _issue(root, "app.example.com", ttl="10m"))["data"]["certificate"])
    assert second.not_valid_before_utc - first.not_valid_before_utc >= datetime.timedelta(
        seconds=3600)


async def test_formats(root: hvac.Client, pki: dict[str, Any]) -> None:
    der = (await _issue(root, "app.example.com", format="der"))["data"]
    certificate = x509.load_der_x509_certificate(base64.b64decode(der["certificate"]))
    ca = x509.load_der_x509_certificate(base64.b64decode(der["issuing_ca"]))
    certificate.verify_directly_issued_by(ca)
    assert der["ca_chain"] == [der["issuing_ca"]]
    serialization.load_der_private_key(base64.b64decode(der["private_key"]), password=None)

    bundle = (await _issue(root, "app.example.com", format="pem_bundle"))["data"]
    assert bundle["certificate"].startswith(bundle["private_key"] + "\n-----BEGIN CERTIFICATE")
    assert bundle["certificate"].endswith("\n" + bundle["issuing_ca"])  # then the chain
    leaf = _cert(bundle["certificate"])  # the first certificate of the bundle is the leaf
    leaf.verify_directly_issued_by(_cert(bundle["issuing_ca"]))

    pkcs8 = (await _issue(root, "app.example.com", private_key_format="pkcs8"))["data"]
    assert pkcs8["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(exceptions.InvalidRequest, match="unsupported format argument"):
        await _issue(root, "app.example.com", format="p12")


async def test_key_type_and_bits_validation(root: hvac.Client, pki: dict[str, Any]) -> None:
    api = root.secrets.pki
    with pytest.raises(exceptions.InvalidRequest, match="unsupported bit length for EC key: 255"):
        await in_thread(api.create_or_update_role, "x", extra_params={"key_type": "ec",
                                                                        "key_bits": 255})
    with pytest.raises(exceptions.InvalidRequest, match="unsupported bit length for RSA key: 1024"):
        await in_thread(api.create_or_update_role, "x", extra_params={"key_bits": 1024})
    with pytest.raises(exceptions.InvalidRequest, match="unknown key type dsa"):
        await in_thread(api.create_or_update_role, "x", extra_params={"key_type": "dsa"})
    await in_thread(api.create_or_update_role, "x", extra_params={"key_type": "ec"})
    assert (await in_thread(api.read_role, "x"))["data"]["key_bits"] == 256


async def test_rsa_role(root: hvac.Client, pki: dict[str, Any]) -> None:
    await in_thread(root.secrets.pki.create_or_update_role, "rsa",
                    extra_params={**ROLE, "key_type": "rsa", "key_bits": 2048})
    data = (await _issue(root, "app.example.com", role="rsa"))["data"]
    assert data["private_key_type"] == "rsa"
    assert data["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = _cert(data["certificate"]).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    _cert(data["certificate"]).verify_directly_issued_by(_cert(pki["data"]["certificate"]))


async def test_revoke_and_crl(root: hvac.Client, pki: dict[str, Any]) -> None:
    issued = await _issue(root, "app.example.com")
    serial = issued["data"]["serial_number"]
    revoked = await in_thread(root.secrets.pki.revoke_certificate, serial)
    assert revoked["data"]["state"] == "revoked"
    assert revoked["data"]["revocation_time"] > 0
    read = (await in_thread(root.secrets.pki.read_certificate, serial))["data"]
    assert read["revocation_time"] == revoked["data"]["revocation_time"]
    assert read["certificate"] == issued["data"]["certificate"]
    crl = x509.load_pem_x509_crl((await in_thread(root.secrets.pki.read_crl)).encode())
    crl_serials = [entry.serial_number for entry in crl]
    assert crl_serials == [_cert(issued["data"]["certificate"]).serial_number]
    assert crl.is_signature_valid(_cert(pki["data"]["certificate"]).public_key())
    with pytest.raises(exceptions.InvalidRequest, match="not found"):
        await in_thread(root.secrets.pki.revoke_certificate, "01:02:03")


async def test_ca_endpoints_need_no_token(vault_ready: ReadyVault, pki: dict[str, Any]) -> None:
    address = vault_ready.address
    pem = await in_thread(requests.get, f"{address}/v1/pki/ca/pem", timeout=5)
    assert pem.status_code == 200
    assert pem.text == pki["data"]["certificate"]
    der = await in_thread(requests.get, f"{address}/v1/pki/ca", timeout=5)
    assert x509.load_der_x509_certificate(der.content) == _cert(pki["data"]["certificate"])
    cert_ca = await in_thread(requests.get, f"{address}/v1/pki/cert/ca", timeout=5)
    assert cert_ca.json()["data"]["certificate"] == pki["data"]["certificate"]
    client = vault_ready.client(token="")
    assert await in_thread(client.secrets.pki.read_ca_certificate) == pki["data"]["certificate"]
    issue = await in_thread(requests.post, f"{address}/v1/pki/issue/web",
                            json={"common_name": "a.example.com"}, timeout=5)
    assert issue.status_code == 403  # issuing does


async def test_issue_needs_update_on_the_role_path(
    vault_ready: ReadyVault, root: hvac.Client, pki: dict[str, Any]
) -> None:
    await in_thread(root.secrets.pki.create_or_update_role, "other", extra_params=ROLE)
    await in_thread(root.sys.create_or_update_policy, "web-certs",
                    'path "pki/issue/web" { capabilities = ["update"] }')
    token = (await in_thread(root.auth.token.create, policies=["web-certs"]))["auth"]
    client = vault_ready.client(token["client_token"])
    assert (await _issue(client, "a.example.com"))["data"]["certificate"]
    with pytest.raises(exceptions.Forbidden):
        await _issue(client, "a.example.com", role="other")
    with pytest.raises(exceptions.Forbidden):
        await in_thread(client.secrets.pki.create_or_update_role, "web",
                        extra_params={"allow_any_name": True})
    with pytest.raises(exceptions.Forbidden):
        await in_thread(client.secrets.pki.revoke_certificate, "01")


async def test_the_ca_survives_a_process_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with running_vault(state_dir=state) as vault:
        init = vault.admin.bootstrap(shares=1, threshold=1)
        root = hvac.Client(url=vault.address, token=init.root_token)
        generated = await _setup(root)
    async with running_vault(state_dir=state) as vault:
        vault.admin.unseal(init.keys)
        root = hvac.Client(url=vault.address, token=init.root_token)
        issued = await _issue(root, "app.example.com")
        assert issued["data"]["issuing_ca"] == generated["data"]["certificate"]
        _cert(issued["data"]["certificate"]).verify_directly_issued_by(
            _cert(generated["data"]["certificate"]))
