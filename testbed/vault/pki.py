"""The ``pki`` secrets engine: a root CA, roles that constrain names, and issued certificates.

A consumer of ``issue/:role`` sees the certificate, its private key, the issuing CA and chain,
the serial number (colon-separated hex) and the expiry (unix seconds); a name the role does not
allow is a 400 with Vault's own sentence ("common name x not allowed by this role"). Name
checks follow Vault's ``validateNames`` order: hostname syntax first (``enforce_hostnames``,
which holds even with ``allow_any_name``), then ``allow_any_name``, localhost, and the
``allowed_domains`` with ``allow_bare_domains``/``allow_subdomains``/``allow_glob_domains``.
TTLs follow ``getCertificateNotAfter``: request ``ttl`` or ``not_after``, else the role's
``ttl``, capped at its ``max_ttl`` with a warning, and refused past the CA's own expiry.

Validity dates come from the emulation's clock, so a test advances time to make a certificate
expire. Key generation is the expensive part on a small machine: EC P-256 keys take
milliseconds, RSA ones much longer; the CA key is parsed once and kept.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import ipaddress
import re
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed.vault.clock import rfc3339
from testbed.vault.durations import go_duration
from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.logical import Backend, Request, Response, Services, entry_or_404
from testbed.vault.params import get_bool, get_duration, get_int, get_list, get_str
from testbed.vault.tokens import SYSTEM_MAX_TTL

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_HOSTNAME = re.compile(
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])\.?$"
)
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    224: ec.SECP224R1, 256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1
}
#: Role fields and their defaults (Vault 1.17's, for those modelled).
_ROLE_DEFAULTS: dict[str, Any] = {
    "ttl": 0,
    "max_ttl": 0,
    "allow_localhost": True,
    "allowed_domains": [],
    "allow_bare_domains": False,
    "allow_subdomains": False,
    "allow_glob_domains": False,
    "allow_wildcard_certificates": True,
    "allow_any_name": False,
    "enforce_hostnames": True,
    "allow_ip_sans": True,
    "allowed_uri_sans": [],
    "allowed_other_sans": [],
    "allowed_user_ids": [],
    "server_flag": True,
    "client_flag": True,
    "key_type": "rsa",
    "key_bits": 0,
    "require_cn": True,
    "not_before_duration": 30,
    "no_store": False,
    "generate_lease": False,
    "issuer_ref": "default",
}
_BOOL_FIELDS = [k for k, v in _ROLE_DEFAULTS.items() if isinstance(v, bool)]
_LIST_FIELDS = [k for k, v in _ROLE_DEFAULTS.items() if isinstance(v, list)]
_DURATION_FIELDS = ("ttl", "max_ttl", "not_before_duration")

PEM_CHAIN = "application/pem-certificate-chain"


def _pem(der_or_pem: bytes) -> str:
    # Vault's PEM fields carry no trailing newline.
    return der_or_pem.decode().strip()


def _cert_pem(certificate: x509.Certificate) -> str:
    return _pem(certificate.public_bytes(serialization.Encoding.PEM))


def colon_hex(serial: int) -> str:
    """Vault's serial format: big-endian bytes as lowercase hex pairs joined by colons."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{byte:02x}" for byte in raw)


def _go_duration_quoted(seconds: int) -> str:
    return f'"{go_duration(seconds)}"'


def generate_key(key_type: str, key_bits: int) -> PrivateKey:
    if key_type == "ec":
        curve = _CURVES.get(key_bits or 256)
        if curve is None:
            raise VaultError(400, f"unsupported bit length for EC key: {key_bits}")
        return ec.generate_private_key(curve())
    if key_type == "rsa":
        bits = key_bits or 2048
        if bits < 2048:
            raise VaultError(400, f"RSA keys < 2048 bits are unsafe and not supported: got {bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    raise VaultError(400, f"unsupported key type: {key_type}")


def _check_key(role: dict[str, Any]) -> None:
    """Vault's ``validateKeyTypeLength`` (no ``any``/``ed25519`` here); 0 bits = the default."""
    key_type = role["key_type"]
    if key_type not in ("rsa", "ec"):
        raise VaultError(400, f"unknown key type {key_type}")
    if not role["key_bits"]:
        role["key_bits"] = 2048 if key_type == "rsa" else 256
    allowed = (2048, 4096, 8192) if key_type == "rsa" else tuple(_CURVES)
    if role["key_bits"] not in allowed:
        name = "RSA" if key_type == "rsa" else "EC"
        raise VaultError(400, f"unsupported bit length for {name} key: {role['key_bits']}")


def _key_type_name(key: PrivateKey) -> str:
    return "ec" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"


class _Issuer:
    """One CA of the mount: certificate plus its (parsed once) key."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.certificate = x509.load_pem_x509_certificate(state["certificate"].encode())
        key = serialization.load_pem_private_key(state["private_key"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        self.key: PrivateKey = key

    @property
    def id(self) -> str:
        return str(self.state["issuer_id"])

    @property
    def pem(self) -> str:
        return str(self.state["certificate"])


class PkiBackend(Backend):
    mount_type = "pki"
    unauthenticated = frozenset(
        {"ca", "ca/pem", "ca_chain", "crl", "crl/pem", "cert/ca", "cert/ca_chain", "cert/crl"}
    )

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        state = state or {}
        self.roles: dict[str, dict[str, Any]] = dict(state.get("roles", {}))
        #: Issued certificates by colon-hex serial: PEM and revocation time (0 = valid).
        self.certs: dict[str, dict[str, Any]] = dict(state.get("certs", {}))
        self._issuers = [_Issuer(entry) for entry in state.get("issuers", [])]

    def dump(self) -> dict[str, Any]:
        return {
            "roles": self.roles,
            "certs": self.certs,
            "issuers": [issuer.state for issuer in self._issuers],
        }

    def exists(self, path: str) -> bool | None:
        if path.startswith("roles/"):
            return path[len("roles/") :] in self.roles
        return None

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.services.clock.now(), datetime.UTC)

    # -- routing ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | None:
        path = request.path.rstrip("/")
        op = request.operation
        writes = op in ("create", "update")
        if path.startswith("root/generate/") and writes:
            return self._generate_root(path[len("root/generate/") :], request.data)
        if path == "roles" and op == "list":
            if not self.roles:
                raise VaultError(404)
            return Response(data={"keys": sorted(self.roles)})
        if path.startswith("roles/"):
            return self._role(path[len("roles/") :], request)
        if path.startswith("issue/") and writes:
            return self._issue(path[len("issue/") :], request.data, ref=None)
        if path.startswith("issuer/") and "/issue/" in path and writes:
            ref, _, role = path[len("issuer/") :].partition("/issue/")
            return self._issue(role, request.data, ref=ref)
        if path == "revoke" and writes:
            return self._revoke(get_str(request.data, "serial_number"))
        if op == "read":
            return self._read(path)
        if path == "certs" and op == "list":
            return Response(data={"keys": sorted(self.certs)})
        raise unsupported_operation()

    def _read(self, path: str) -> Response:
        if path in ("ca", "ca/pem", "ca_chain", "cert/ca_chain"):
            issuer = self._issuer("default")
            if path == "ca":
                der = issuer.certificate.public_bytes(serialization.Encoding.DER)
                return Response(raw=der, content_type="application/pkix-cert")
            return Response(raw=issuer.pem.encode(), content_type=PEM_CHAIN)
        if path in ("crl", "crl/pem", "cert/crl"):
            crl = self._crl()
            if path == "crl":
                return Response(
                    raw=crl.public_bytes(serialization.Encoding.DER),
                    content_type="application/pkix-crl",
                )
            pem = _pem(crl.public_bytes(serialization.Encoding.PEM))
            if path == "cert/crl":
                return Response(data={"certificate": pem, "revocation_time": 0})
            return Response(raw=pem.encode(), content_type="application/x-pem-file")
        if path == "cert/ca":
            issuer = self._issuer("default")
            return Response(data=self._cert_data(issuer.pem, 0, issuer.id))
        if path.startswith("cert/"):
            serial = path[len("cert/") :].replace("-", ":").lower()
            entry = entry_or_404(self.certs, serial)
            return Response(
                data=self._cert_data(entry["certificate"], entry["revoked"], entry["issuer_id"])
            )
        raise unsupported_operation()

    @staticmethod
    def _cert_data(pem: str, revoked: float, issuer_id: str) -> dict[str, Any]:
        return {
            "certificate": pem,
            "revocation_time": int(revoked),
            "revocation_time_rfc3339": rfc3339(revoked) if revoked else "",
            "issuer_id": issuer_id,
        }

    # -- issuers ---------------------------------------------------------------------------

    def _issuer(self, ref: str) -> _Issuer:
        if not self._issuers:
            raise VaultError(400, "no default issuer currently configured")
        if ref in ("", "default"):
            return self._issuers[0]
        for issuer in self._issuers:
            if ref in (issuer.id, issuer.state["issuer_name"]):
                return issuer
        raise VaultError(400, f"unable to find PKI issuer for reference: {ref}")

    def _generate_root(self, kind: str, data: dict[str, Any]) -> Response:
        if kind not in ("internal", "exported"):
            raise VaultError(400, f'invalid type "{kind}": expected internal or exported')
        common_name = get_str(data, "common_name")
        if not common_name:
            raise VaultError(
                400,
                'the common_name field is required, or must be provided in a CSR with '
                '"use_csr_common_name" set to true, unless "require_cn" is set to false',
            )
        key = generate_key(get_str(data, "key_type", "rsa"), get_int(data, "key_bits"))
        now = self._now()
        ttl = get_duration(data, "ttl") or SYSTEM_MAX_TTL
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=30))
            .not_valid_after(now + datetime.timedelta(seconds=ttl))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        sans = self._dns_and_ip_sans(data)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(key, hashes.SHA256())
        pem = _cert_pem(certificate)
        key_pem = _pem(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        issuer_id = secrets.token_hex(16)
        issuer_id = "-".join(
            (issuer_id[:8], issuer_id[8:12], issuer_id[12:16], issuer_id[16:20], issuer_id[20:])
        )
        state = {
            "issuer_id": issuer_id,
            "issuer_name": get_str(data, "issuer_name"),
            "key_id": secrets.token_hex(16),
            "key_name": get_str(data, "key_name"),
            "certificate": pem,
            "private_key": key_pem,
        }
        self._issuers.append(_Issuer(state))
        serial = colon_hex(certificate.serial_number)
        self.certs[serial] = {"certificate": pem, "revoked": 0, "issuer_id": issuer_id}
        self.changed()
        body: dict[str, Any] = {
            "certificate": pem,
            "expiration": int(certificate.not_valid_after_utc.timestamp()),
            "issuer_id": issuer_id,
            "issuer_name": state["issuer_name"],
            "issuing_ca": pem,
            "key_id": state["key_id"],
            "key_name": state["key_name"],
            "serial_number": serial,
        }
        if kind == "exported":
            body["private_key"] = key_pem
            body["private_key_type"] = _key_type_name(key)
        return Response(data=body)

    @staticmethod
    def _dns_and_ip_sans(data: dict[str, Any]) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [
            x509.DNSName(name) for name in get_list(data, "alt_names") or []
        ]
        for text in get_list(data, "ip_sans") or []:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(text)))
            except ValueError:
                raise VaultError(400, f'the value "{text}" is not a valid IP address') from None
        return names

    # -- roles -----------------------------------------------------------------------------

    def _role(self, name: str, request: Request) -> Response | None:
        op = request.operation
        if op == "read":
            return Response(data=dict(entry_or_404(self.roles, name)))
        if op == "delete":
            self.delete_entry(self.roles, name)
            return None
        if op not in ("create", "update"):
            raise unsupported_operation()
        data = request.data
        role = dict(_ROLE_DEFAULTS) if op == "create" else dict(self.roles[name])
        for field in _BOOL_FIELDS:
            role[field] = get_bool(data, field, role[field])
        for field in _LIST_FIELDS:
            value = get_list(data, field)
            if value is not None:
                role[field] = value
        for field in _DURATION_FIELDS:
            role[field] = get_duration(data, field, role[field])
        role["key_type"] = get_str(data, "key_type", role["key_type"])
        role["key_bits"] = get_int(data, "key_bits", role["key_bits"])
        role["issuer_ref"] = get_str(data, "issuer_ref", role["issuer_ref"])
        _check_key(role)
        if role["max_ttl"] and role["ttl"] > role["max_ttl"]:
            raise VaultError(400, '"ttl" value must be less than "max_ttl" value')
        self.roles[name] = role
        self.changed()
        return None

    # -- issuing ---------------------------------------------------------------------------

    def _issue(self, role_name: str, data: dict[str, Any], *, ref: str | None) -> Response:
        role = self.roles.get(role_name)
        if role is None:
            raise VaultError(400, f"unknown role: {role_name}")
        issuer = self._issuer(ref or get_str(data, "issuer_ref") or role["issuer_ref"])
        warnings: list[str] = []
        common_name = get_str(data, "common_name")
        exclude_cn = get_bool(data, "exclude_cn_from_sans")
        if not common_name and role["require_cn"]:
            raise VaultError(
                400,
                'the common_name field is required, or must be provided in a CSR with '
                '"use_csr_common_name" set to true, unless "require_cn" is set to false',
            )
        if common_name:
            bad = _bad_name(role, [common_name])
            if bad is not None:
                raise VaultError(400, f"common name {bad} not allowed by this role")
        dns_names: list[str] = []
        emails: list[str] = []
        if common_name and not exclude_cn:
            # The CN joins the SANs only as an email address or a well-formed hostname.
            if "@" in common_name:
                emails.append(common_name)
            elif _is_hostname(common_name):
                dns_names.append(common_name)
        for name in get_list(data, "alt_names") or []:
            target = emails if "@" in name else dns_names
            if name not in target:
                target.append(name)
        bad = _bad_name(role, dns_names)
        if bad is not None:
            raise VaultError(400, f"subject alternate name {bad} not allowed by this role")
        bad = _bad_name(role, emails)
        if bad is not None:
            raise VaultError(400, f"email address {bad} not allowed by this role")
        ips = get_list(data, "ip_sans") or []
        if ips and not role["allow_ip_sans"]:
            raise VaultError(
                400,
                "IP Subject Alternative Names are not allowed in this role, "
                f"but was provided [{' '.join(ips)}]",
            )
        uris = get_list(data, "uri_sans") or []
        if uris and not role["allowed_uri_sans"]:
            raise VaultError(
                400,
                "URI Subject Alternative Names are not allowed in this role, "
                "but were provided via the API",
            )
        for uri in uris:
            if not any(fnmatch.fnmatchcase(uri, allowed) for allowed in role["allowed_uri_sans"]):
                raise VaultError(
                    400,
                    "URI Subject Alternative Names were provided via the API which are not "
                    "valid for this role",
                )
        others = [_other_san(text) for text in get_list(data, "other_sans") or []]
        _check_other_sans(role["allowed_other_sans"], others)

        user_ids = get_list(data, "user_ids") or []
        for user_id in user_ids:
            if not _user_id_allowed(role["allowed_user_ids"], user_id):
                raise VaultError(400, f"user_id {user_id} is not allowed by this role")
        not_before, not_after = self._validity(role, data, issuer, warnings)
        key = generate_key(role["key_type"], role["key_bits"])
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.RFC822Name(name) for name in emails]
        try:
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        except ValueError as error:
            raise VaultError(400, str(error)) from None
        sans += [x509.UniformResourceIdentifier(uri) for uri in uris]
        sans += [
            x509.OtherName(x509.ObjectIdentifier(oid), _der_utf8(value)) for oid, value in others
        ]
        usages = []
        if role["server_flag"]:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if role["client_flag"]:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        is_rsa = role["key_type"] == "rsa"
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    ([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
                    + [x509.NameAttribute(NameOID.USER_ID, user_id) for user_id in user_ids]
                )
            )
            .issuer_name(issuer.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False,
                    key_encipherment=is_rsa, data_encipherment=False, key_agreement=not is_rsa,
                    key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(issuer.key, hashes.SHA256())
        serial = colon_hex(certificate.serial_number)
        if not role["no_store"]:
            self.certs[serial] = {
                "certificate": _cert_pem(certificate),
                "revoked": 0,
                "issuer_id": issuer.id,
            }
            self.changed()
        body = _render(
            certificate=certificate,
            key=key,
            issuer=issuer,
            fmt=get_str(data, "format", "pem") or "pem",
            key_format=get_str(data, "private_key_format", "der") or "der",
        )
        body["serial_number"] = serial
        body["expiration"] = int(certificate.not_valid_after_utc.timestamp())
        return Response(data=body, warnings=warnings or None)

    def _validity(
        self, role: dict[str, Any], data: dict[str, Any], issuer: _Issuer, warnings: list[str]
    ) -> tuple[datetime.datetime, datetime.datetime]:
        """Vault's ``getCertificateNotAfter`` (leaf_not_after_behavior "err")."""
        now = self._now()
        ttl = get_duration(data, "ttl")
        not_after_text = get_str(data, "not_after")
        if ttl and not_after_text:
            raise VaultError(
                400,
                "Either ttl or not_after should be provided. Both should not be provided in "
                "the same request.",
            )
        ttl = ttl or role["ttl"] or SYSTEM_MAX_TTL
        max_ttl = role["max_ttl"] or SYSTEM_MAX_TTL
        if ttl > max_ttl:
            warnings.append(
                f"TTL {_go_duration_quoted(ttl)} is longer than permitted maxTTL "
                f"{_go_duration_quoted(max_ttl)}, so maxTTL is being used"
            )
            ttl = max_ttl
        if not_after_text:
            try:
                not_after = datetime.datetime.fromisoformat(not_after_text.replace("Z", "+00:00"))
            except ValueError as error:
                raise VaultError(400, str(error)) from None
            if not_after.tzinfo is None:
                raise VaultError(400, f'parsing time "{not_after_text}": missing time zone')
        else:
            not_after = now + datetime.timedelta(seconds=ttl)
        ca_not_after = issuer.certificate.not_valid_after_utc
        if not_after > ca_not_after:
            raise VaultError(
                400,
                f"cannot satisfy request, as TTL would result in notAfter of "
                f"{rfc3339(not_after.timestamp())} that is beyond the expiration of the CA "
                f"certificate at {rfc3339(ca_not_after.timestamp())}",
            )
        not_before = now - datetime.timedelta(seconds=role["not_before_duration"])
        return not_before, not_after

    # -- revocation ------------------------------------------------------------------------

    def _revoke(self, serial: str) -> Response:
        if not serial:
            raise VaultError(400, "the serial number must be provided")
        serial = serial.replace("-", ":").lower()
        entry = self.certs.get(serial)
        if entry is None:
            raise VaultError(400, f"certificate with serial {serial} not found")
        if any(colon_hex(i.certificate.serial_number) == serial for i in self._issuers):
            issuer_id = entry["issuer_id"]
            raise VaultError(400, f"adding issuer (id: {issuer_id}) to its own CRL is not allowed")
        if not entry["revoked"]:
            entry["revoked"] = self.services.clock.now()
            self.changed()
        revoked = entry["revoked"]
        return Response(
            data={
                "revocation_time": int(revoked),
                "revocation_time_rfc3339": rfc3339(revoked),
                "state": "revoked",
            }
        )

    def _crl(self) -> x509.CertificateRevocationList:
        issuer = self._issuer("default")
        now = self._now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.certificate.subject)
            .last_update(now)
            .next_update(now + datetime.timedelta(hours=72))
        )
        for serial, entry in self.certs.items():
            if entry["revoked"] and entry["issuer_id"] == issuer.id:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(serial.replace(":", ""), 16))
                    .revocation_date(
                        datetime.datetime.fromtimestamp(entry["revoked"], datetime.UTC)
                    )
                    .build()
                )
        return builder.sign(issuer.key, hashes.SHA256())


def _parse_other_san(text: str) -> tuple[str, str]:
    """Vault's ``ParseOtherSANs`` for one ``<oid>;UTF8:<value>``; ``ValueError`` says why."""
    if ";" not in text:
        raise ValueError(f'expected a semicolon in other SAN "{text}"')
    oid, typed = text.split(";", 1)
    if ":" not in typed:
        raise ValueError(f'expected a colon in other SAN "{text}"')
    kind, value = typed.split(":", 1)
    if kind.lower() not in ("utf8", "utf-8"):
        raise ValueError(
            f'only utf8 other SANs are supported; found non-supported type in other SAN "{text}"'
        )
    return oid, value


def _other_san(text: str) -> tuple[str, str]:
    try:
        return _parse_other_san(text)
    except ValueError as error:
        raise VaultError(400, f"could not parse requested other SAN: {error}") from None


def _check_other_sans(allowed_texts: list[str], requested: list[tuple[str, str]]) -> None:
    """Vault's ``ValidateOtherSANs``: an OID the role lacks, or a value no glob matches."""
    if allowed_texts == ["*"]:
        return
    allowed: dict[str, list[str]] = {}
    for text in allowed_texts:
        try:
            oid, value = _parse_other_san(text)
        except ValueError as error:
            raise VaultError(400, f"error parsing role's allowed SANs: {error}") from None
        allowed.setdefault(oid, []).append(value)
    for oid, value in requested:
        if oid not in allowed:
            raise VaultError(400, f"other SAN OID {oid} not allowed by this role")
        if not any(fnmatch.fnmatchcase(value, pattern) for pattern in allowed[oid]):
            raise VaultError(400, f"other SAN {value} not allowed for OID {oid} by this role")


def _user_id_allowed(allowed: list[str], user_id: str) -> bool:
    """Vault's ``ValidateUserId``: case-insensitive match or a glob; nothing when none listed."""
    return any(
        pattern.lower() == user_id.lower()
        or ("*" in pattern and fnmatch.fnmatchcase(user_id, pattern))
        for pattern in allowed
        if pattern
    )


def _der_utf8(value: str) -> bytes:
    raw = value.encode()
    if len(raw) < 128:
        return b"\x0c" + bytes([len(raw)]) + raw
    length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return b"\x0c" + bytes([0x80 | len(length)]) + length + raw


def _is_hostname(name: str) -> bool:
    try:
        return bool(_HOSTNAME.match(name.removeprefix("*.").encode("idna").decode()))
    except UnicodeError:
        return False


def _bad_name(role: dict[str, Any], names: list[str]) -> str | None:
    """Vault's ``validateNames``: the first name the role refuses, or ``None``."""
    for name in names:
        reduced = name
        email_domain = name
        is_email = False
        is_wildcard = False
        if "@" in reduced:
            parts = reduced.split("@")
            if len(parts) != 2:
                return name
            reduced = email_domain = parts[1]
            is_email = True
        labels = reduced.split(".")
        if "*" in labels[0]:
            if not role["allow_wildcard_certificates"] or labels[0] != "*" or len(labels) < 2:
                return name
            is_wildcard = True
            reduced = ".".join(labels[1:])
        if is_email and is_wildcard:
            return name
        if role["enforce_hostnames"] and reduced:
            try:
                ascii_name = reduced.encode("idna").decode()
            except UnicodeError:
                return name
            if not _HOSTNAME.match(ascii_name):
                return name
        if role["allow_any_name"]:
            continue
        if role["allow_localhost"]:
            if reduced in ("localhost", "localdomain"):
                continue
            if role["allow_subdomains"] and reduced.endswith((".localhost", ".localdomain")):
                continue
        if _allowed_by_domains(
            role, name, reduced, email_domain, is_email=is_email, is_wildcard=is_wildcard
        ):
            continue
        return name
    return None


def _allowed_by_domains(
    role: dict[str, Any], name: str, reduced: str, email_domain: str, *, is_email: bool,
    is_wildcard: bool,
) -> bool:
    for domain in role["allowed_domains"]:
        if not domain:
            continue
        if role["allow_bare_domains"] and (
            name.lower() == domain.lower() or (is_email and email_domain.lower() == domain.lower())
        ):
            return True
        if role["allow_subdomains"] and (
            reduced.endswith("." + domain) or (is_wildcard and reduced.lower() == domain.lower())
        ):
            return True
        if role["allow_glob_domains"] and "*" in domain and fnmatch.fnmatchcase(name, domain):
            return True
    return False


def _render(
    *, certificate: x509.Certificate, key: PrivateKey, issuer: _Issuer, fmt: str, key_format: str
) -> dict[str, Any]:
    """The certificate fields of ``issue`` in ``format`` and ``private_key_format``."""
    if fmt not in ("pem", "der", "pem_bundle"):
        raise VaultError(400, f'unsupported format argument: "{fmt}"')
    if key_format not in ("der", "pem", "pkcs8"):
        raise VaultError(400, f'unsupported private_key_format argument: "{key_format}"')
    private_format = (
        serialization.PrivateFormat.PKCS8
        if key_format == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    if fmt == "der":
        def b64(raw: bytes) -> str:
            return base64.b64encode(raw).decode()

        issuing = b64(issuer.certificate.public_bytes(serialization.Encoding.DER))
        return {
            "certificate": b64(certificate.public_bytes(serialization.Encoding.DER)),
            "issuing_ca": issuing,
            "ca_chain": [issuing],
            "private_key": b64(
                key.private_bytes(
                    serialization.Encoding.DER, private_format, serialization.NoEncryption()
                )
            ),
            "private_key_type": _key_type_name(key),
        }
    cert_pem = _cert_pem(certificate)
    key_pem = _pem(
        key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())
    )
    return {
        # pem_bundle: certutil's ToPEMBundle, i.e. key, certificate and CA chain joined by "\n".
        "certificate": (
            "\n".join([key_pem, cert_pem, issuer.pem]) if fmt == "pem_bundle" else cert_pem
        ),
        "issuing_ca": issuer.pem,
        "ca_chain": [issuer.pem],
        "private_key": key_pem,
        "private_key_type": _key_type_name(key),
    }
