"""Throw-away certificate authorities for tests and emulations that need real TLS on loopback.

A CA writes its certificate, and the certificates and keys it issues (CN and DNS SANs, optional
IP SANs, client or server usage), as PEM files into a directory; keys are 0600 from creation.
:meth:`Authority.load_or_create` keeps the CA's key in a directory, so a restarted emulation
is still trusted by clients holding the old CA file.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Authority:
    """A throw-away CA that writes PEM files into ``directory``."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    directory: Path

    @classmethod
    def create(cls, name: str, directory: Path, *, title: str | None = None) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, title or f"{name} peer CA")]
        )
        certificate = (
            _builder(subject, subject, key.public_key(), days=365)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        authority = cls(name, key, certificate, directory)
        authority.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return authority

    @classmethod
    def load_or_create(cls, name: str, directory: Path, *, title: str | None = None) -> Authority:
        """The CA kept in ``directory`` (its key in ``{name}-ca.key``, 0600), made if absent."""
        key_file = directory / f"{name}-ca.key"
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            pem = (directory / f"{name}-ca.crt").read_bytes()
            certificate = x509.load_pem_x509_certificate(pem)
            return cls(name, key, certificate, directory)
        directory.mkdir(parents=True, exist_ok=True)
        authority = cls.create(name, directory, title=title)
        _write_key(key_file, authority.key)
        return authority

    @property
    def ca_file(self) -> Path:
        return self.directory / f"{self.name}-ca.crt"

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        ips: tuple[str, ...] = (),
        names: tuple[str, ...] = (),
        directory: Path | None = None,
        days: int = 1,
    ) -> tuple[Path, Path]:
        """A certificate and key for ``common_name`` (CN and DNS SAN, then ``names`` as more
        DNS SANs) into ``directory`` (default: the CA's); their PEM paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [
            x509.DNSName(n) for n in dict.fromkeys((common_name, *names))
        ]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            _builder(subject, self.certificate.subject, key.public_key(), days=days)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        where = directory or self.directory
        where.mkdir(parents=True, exist_ok=True)
        cert_file = where / f"{self.name}-{common_name}.crt"
        key_file = where / f"{self.name}-{common_name}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return cert_file, key_file


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, *, days: int = 1
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
