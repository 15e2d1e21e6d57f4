"""VaultDynamicSecret: credentials Vault issues under a lease, kept alive and rotated by syncd.

Field names and meanings are those of Vault Secrets Operator's ``VaultDynamicSecret``
(secrets.hashicorp.com/v1beta1, v1.4.1), so that a VSO manifest moves over by changing its
apiVersion. The field readers are :mod:`syncd.spec_parts`'s, the destination and the restart
targets :mod:`syncd.specs`'s: problems are reported the same way, each naming its field path,
all of them at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from plumbing.kube import Resource
from syncd.spec_parts import HasSecretMeta, Reader, SecretMeta, SpecError, frozen
from syncd.specs import (
    GROUP,
    VERSION,
    Destination,
    RolloutRestartTarget,
    read_destination,
    read_targets,
)

VAULT_DYNAMIC_SECRET = Resource(GROUP, VERSION, "vaultdynamicsecrets", kind="VaultDynamicSecret")

HTTPMethod = Literal["GET", "POST", "PUT"]
HTTP_METHODS: tuple[HTTPMethod, ...] = get_args(HTTPMethod)
DEFAULT_RENEWAL_PERCENT = 67
#: VSO's bound: renewing later than this leaves too little time to fetch new credentials.
MAX_RENEWAL_PERCENT = 90

__all__ = ["VAULT_DYNAMIC_SECRET", "SpecError", "VaultDynamicSecret", "parse_vault_dynamic_secret"]


@dataclass(frozen=True, kw_only=True, slots=True)
class VaultDynamicSecret(HasSecretMeta):
    meta: SecretMeta
    mount: str
    path: str
    method: HTTPMethod
    #: Sent as the request body (POST, PUT) or the query (GET). Not secret in VSO's model
    #: (they are in the spec), but not logged either.
    params: Mapping[str, str]
    renewal_percent: int
    revoke: bool
    allow_static_creds: bool
    #: For responses without a lease (and static credentials without a ttl): how often to read
    #: again; None: never (VSO's default).
    refresh_after_seconds: float | None
    destination: Destination
    rollout_restart_targets: tuple[RolloutRestartTarget, ...]
    warnings: tuple[str, ...] = ()


def parse_vault_dynamic_secret(obj: Mapping[str, Any]) -> VaultDynamicSecret:
    """A VaultDynamicSecret from its API object; raises :class:`SpecError`."""
    r = Reader()
    meta, spec = r.secret_meta(obj, VAULT_DYNAMIC_SECRET)
    mount = r.vault_path(spec, "mount", "spec", hint="the secrets engine mount, e.g. database")
    path = r.vault_path(spec, "path", "spec", hint="the credentials path, e.g. creds/app")
    method = r.choice(spec, "requestHTTPMethod", "spec", HTTP_METHODS, default="GET")
    params = r.string_map(spec, "params", "spec")
    renewal_percent = r.integer(spec, "renewalPercent", "spec",
                                default=DEFAULT_RENEWAL_PERCENT, minimum=0)
    if renewal_percent > MAX_RENEWAL_PERCENT:
        r.fail("spec.renewalPercent", f"{renewal_percent} is over {MAX_RENEWAL_PERCENT}: "
               "renewing later leaves too little time to fetch new credentials")
    dest_spec = r.mapping(spec, "destination", "spec", required=True) or {}
    destination, warnings = read_destination(r, dest_spec)
    secret = VaultDynamicSecret(
        meta=meta,
        mount=mount,
        path=path,
        method=cast(HTTPMethod, method or "GET"),
        params=frozen(params),
        renewal_percent=renewal_percent,
        revoke=r.boolean(spec, "revoke", "spec", default=False),
        allow_static_creds=r.boolean(spec, "allowStaticCreds", "spec", default=False),
        refresh_after_seconds=r.duration(spec, "refreshAfter", "spec", default=None),
        destination=destination,
        rollout_restart_targets=read_targets(r, spec),
        warnings=tuple(warnings),
    )
    r.raise_for(VAULT_DYNAMIC_SECRET, meta.namespace, meta.name)
    return secret
