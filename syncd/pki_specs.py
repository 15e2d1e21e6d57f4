"""VaultPKISecret: a certificate Vault's pki engine issues, re-issued before it expires.

Field names and meanings are those of Vault Secrets Operator's ``VaultPKISecret``
(secrets.hashicorp.com/v1beta1, v1.4.1). The field readers are :mod:`syncd.spec_parts`'s, the
destination and the restart targets :mod:`syncd.specs`'s.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from plumbing.kube import Resource
from syncd.spec_parts import HasSecretMeta, Reader, SecretMeta, SpecError
from syncd.specs import (
    GROUP,
    VERSION,
    Destination,
    RolloutRestartTarget,
    read_destination,
    read_targets,
)

VAULT_PKI_SECRET = Resource(GROUP, VERSION, "vaultpkisecrets", kind="VaultPKISecret")

Format = Literal["pem", "der", "pem_bundle"]
FORMATS: tuple[Format, ...] = get_args(Format)
KeyFormat = Literal["der", "pkcs8"]
KEY_FORMATS: tuple[KeyFormat, ...] = get_args(KeyFormat)
TLS = "kubernetes.io/tls"

__all__ = ["TLS", "VAULT_PKI_SECRET", "SpecError", "VaultPKISecret", "parse_vault_pki_secret"]


@dataclass(frozen=True, kw_only=True, slots=True)
class VaultPKISecret(HasSecretMeta):
    meta: SecretMeta
    mount: str
    role: str
    common_name: str | None
    alt_names: tuple[str, ...]
    ip_sans: tuple[str, ...]
    uri_sans: tuple[str, ...]
    other_sans: tuple[str, ...]
    user_ids: tuple[str, ...]
    #: As written (a Vault duration, e.g. "72h"); None: the role's.
    ttl: str | None
    format: Format
    private_key_format: KeyFormat
    not_after: str | None
    exclude_cn_from_sans: bool
    issuer_ref: str | None
    expiry_offset_seconds: float
    revoke: bool
    clear: bool
    destination: Destination
    rollout_restart_targets: tuple[RolloutRestartTarget, ...]
    warnings: tuple[str, ...] = ()

    def request(self) -> dict[str, Any]:
        """The body of ``issue/:role``: only what is set, in Vault's parameter names."""
        body: dict[str, Any] = {"format": self.format,
                                "private_key_format": self.private_key_format}
        for key, value in (("common_name", self.common_name), ("ttl", self.ttl),
                           ("not_after", self.not_after)):
            if value:
                body[key] = value
        for key, values in (("alt_names", self.alt_names), ("ip_sans", self.ip_sans),
                            ("uri_sans", self.uri_sans), ("other_sans", self.other_sans),
                            ("user_ids", self.user_ids)):
            if values:
                body[key] = ",".join(values)
        if self.exclude_cn_from_sans:
            body["exclude_cn_from_sans"] = True
        return body


def parse_vault_pki_secret(obj: Mapping[str, Any]) -> VaultPKISecret:
    """A VaultPKISecret from its API object; raises :class:`SpecError`."""
    r = Reader()
    meta, spec = r.secret_meta(obj, VAULT_PKI_SECRET)
    mount = r.vault_path(spec, "mount", "spec", hint="the pki engine mount, e.g. pki")
    role = r.vault_path(spec, "role", "spec", hint="the pki role to issue with")
    if "/" in role:
        r.fail("spec.role", f"{role!r} is a role name, not a path")
    lists = {key: r.string_list(spec, key, "spec") or ()
             for key in ("altNames", "ipSans", "uriSans", "otherSans", "userIDs")}
    for i, ip in enumerate(lists["ipSans"]):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            r.fail(f"spec.ipSans[{i}]", f"{ip!r} is not an IP address")
    ttl = r.string(spec, "ttl", "spec")
    if ttl is not None:
        r.duration(spec, "ttl", "spec", default=None)
    not_after = r.string(spec, "notAfter", "spec")
    if not_after:
        try:
            moment = dt.datetime.fromisoformat(not_after)
            if moment.tzinfo is None:
                r.fail("spec.notAfter", f"{not_after!r} has no time zone (UTC: end with Z)")
        except ValueError:
            r.fail("spec.notAfter", f"{not_after!r} is not an RFC 3339 time, e.g. "
                   "2030-01-01T00:00:00Z")
    fmt = cast(Format, r.choice(spec, "format", "spec", FORMATS, default="pem"))
    key_format = cast(KeyFormat, r.choice(spec, "privateKeyFormat", "spec", KEY_FORMATS,
                                          default="der"))
    dest_spec = r.mapping(spec, "destination", "spec", required=True) or {}
    destination, warnings = read_destination(r, dest_spec)
    if destination.type == TLS and destination.create and fmt == "der":
        r.fail("spec.format", "a kubernetes.io/tls Secret holds PEM: use pem or pem_bundle")
    offset = 0.0
    if spec.get("expiryOffset") not in (None, "", "0", "0s"):
        offset = r.duration(spec, "expiryOffset", "spec", default=None) or 0.0
    secret = VaultPKISecret(
        meta=meta, mount=mount, role=role, common_name=r.string(spec, "commonName", "spec"),
        alt_names=lists["altNames"], ip_sans=lists["ipSans"], uri_sans=lists["uriSans"],
        other_sans=lists["otherSans"], user_ids=lists["userIDs"], ttl=ttl, format=fmt,
        private_key_format=key_format, not_after=not_after,
        exclude_cn_from_sans=r.boolean(spec, "excludeCNFromSans", "spec", default=False),
        issuer_ref=_issuer_ref(r, spec),
        expiry_offset_seconds=offset,
        revoke=r.boolean(spec, "revoke", "spec", default=False),
        clear=r.boolean(spec, "clear", "spec", default=False),
        destination=destination, rollout_restart_targets=read_targets(r, spec),
        warnings=tuple(warnings),
    )
    r.raise_for(VAULT_PKI_SECRET, meta.namespace, meta.name)
    return secret


def _issuer_ref(r: Reader, spec: Mapping[str, Any]) -> str | None:
    """An issuer's name or id (it becomes a path segment: no slashes)."""
    value = r.string(spec, "issuerRef", "spec")
    if value and ("/" in value or value in (".", "..")):
        r.fail("spec.issuerRef", f"{value!r} is not an issuer name or id")
    return value or None
