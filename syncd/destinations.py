"""Writing the destination Secret: create, update, take over or recreate — or refuse.

The rules, from VSO's and ESO's users' experience:

- ``create: true``: syncd owns the Secret. It is created with our labels (the Secret cache
  watches them, which is how drift is noticed at once) and, under ``deletionPolicy: Delete``,
  an ownerReference to the VaultStaticSecret so that Kubernetes deletes it with its owner.
  An existing Secret that is not ours is left alone unless ``overwrite: true``.
- ``create: false``: the Secret belongs to someone else; only its ``data`` is replaced, and
  only if the Secret agrees to it: it carries the annotation
  ``secrets.vault-syncd.dev/destination-of: <name of the VaultStaticSecret>``, or syncd created
  it for this VaultStaticSecret. Whoever may create a VaultStaticSecret must not be able to
  overwrite any Secret of the namespace through syncd (a Helm release record once lost its
  ``release`` key that way). Even with the annotation, a Secret that is another program's is
  refused: a type syncd does not write (service-account tokens, ``helm.sh/release.v1``,
  bootstrap tokens...), a controller ownerReference to something else, or cert-manager's.
- The ``type`` of a Secret is immutable in Kubernetes, so a change of type recreates it.
- Writes are conditional on the resourceVersion we read: a concurrent edit is a conflict and
  the reconcile is retried, never a silent overwrite.

Nothing here decides *whether* to write: the controller compares fingerprints first, so a
refresh that changes nothing never reaches this module.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from plumbing.kube import JSON, SECRETS, Kube, KubeError
from syncd.fingerprint import fingerprint

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "vault-syncd"
OWNER_UID_LABEL = "secrets.vault-syncd.dev/owner-uid"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
#: On a Secret, the name of the VaultStaticSecret (same namespace) allowed to write its data
#: with ``create: false``.
DESTINATION_OF = "secrets.vault-syncd.dev/destination-of"
#: The Secret types ``create: false`` writes: those that are data. Others belong to programs
#: (``kubernetes.io/service-account-token``, ``helm.sh/release.v1``,
#: ``bootstrap.kubernetes.io/token``, any custom type).
WRITABLE_TYPES = ("Opaque", "kubernetes.io/basic-auth", "kubernetes.io/ssh-auth",
                  "kubernetes.io/tls", "kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg")
_CERT_MANAGER = "cert-manager.io/certificate-name"

Written = Literal["Created", "Updated", "Recreated"]
#: Where a cached Secret keeps the keyed MAC of its ``data``, which the cache does not keep
#: (:func:`syncd.caching.slim_secret`): a top-level field no Kubernetes object has.
CACHED_MAC = "vault-syncd.dev/dataMAC"


class DestinationError(Exception):
    """The destination cannot be written as asked; the message says what to change."""

    reason = "DestinationError"


class DestinationRefused(DestinationError):
    """The destination is not syncd's to write (``create: false``); nothing was written."""

    reason = "DestinationRefused"


@dataclass(frozen=True)
class Desired:
    """What the destination Secret should hold."""

    namespace: str
    name: str
    type: str
    create: bool
    overwrite: bool
    owner: JSON = field(repr=False)
    data: Mapping[str, bytes] = field(repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_reference: bool = True
    #: The keyed fingerprint of ``data`` (what a cached Secret's data is compared by).
    mac: str = ""


def decode_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` as bytes (what the fingerprint is computed over)."""
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def data_mac(secret: Mapping[str, Any], *, key: bytes) -> str:
    """The keyed MAC of a Secret's data: the cache's (it keeps no data), else computed."""
    cached = secret.get(CACHED_MAC)
    if isinstance(cached, str):
        return cached
    return fingerprint(key=key, data=decode_data(secret))


def _without_mac(secret: Mapping[str, Any]) -> JSON:
    """A cached Secret as the API server knows it (the body of a write built from it)."""
    return {k: v for k, v in secret.items() if k != CACHED_MAC}


def _encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def is_ours(secret: Mapping[str, Any], owner_uid: str) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(OWNER_UID_LABEL) == owner_uid)


def _owner_reference(owner: JSON) -> JSON:
    metadata = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _managed_metadata(desired: Desired, current: Mapping[str, Any] | None) -> JSON:
    metadata = dict((current or {}).get("metadata") or {})
    owner_uid = desired.owner["metadata"]["uid"]
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        **desired.labels,
        MANAGED_BY_LABEL: MANAGED_BY,
        OWNER_UID_LABEL: owner_uid,
    }
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **desired.annotations}
    references = [r for r in metadata.get("ownerReferences") or [] if r.get("uid") != owner_uid]
    if desired.owner_reference:
        references.append(_owner_reference(desired.owner))
    metadata["ownerReferences"] = references
    metadata["name"], metadata["namespace"] = desired.name, desired.namespace
    return metadata


def in_sync(desired: Desired, current: Mapping[str, Any] | None, *, key: bytes) -> bool:
    """Whether ``current`` already is what ``desired`` asks for (so no write is needed); the
    data is compared by its MAC under ``key``."""
    if current is None:
        return False
    if data_mac(current, key=key) != (desired.mac or fingerprint(key=key, data=desired.data)):
        return False
    if not desired.create:
        return True
    metadata = current.get("metadata") or {}
    labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    has_reference = any(
        r.get("uid") == desired.owner["metadata"]["uid"]
        for r in metadata.get("ownerReferences") or []
    )
    return (
        (current.get("type") or "Opaque") == desired.type
        and is_ours(current, desired.owner["metadata"]["uid"])
        and all(labels.get(k) == v for k, v in desired.labels.items())
        and all(annotations.get(k) == v for k, v in desired.annotations.items())
        and has_reference == desired.owner_reference
    )


async def write(kube: Kube, desired: Desired, *, current: JSON | None) -> Written:
    """Make the destination match ``desired``. ``current`` is the cached Secret, if any."""
    path = SECRETS.path(namespace=desired.namespace)
    item = SECRETS.path(namespace=desired.namespace, name=desired.name)
    where = f"Secret {desired.namespace}/{desired.name}"
    if not desired.create:
        if current is None:
            try:
                current = await kube.request("GET", item)
            except KubeError as exc:
                if exc.not_found:
                    raise DestinationError(
                        f"{where} does not exist; create it (annotated {DESTINATION_OF}:"
                        f" {desired.owner['metadata']['name']}), or set"
                        " spec.destination.create to true"
                    ) from None
                raise
        refusal = _refusal(current, desired)
        if refusal is not None:
            raise DestinationRefused(
                f"spec.destination.name: {where} {refusal}; nothing was written")
        # Conditional on the resourceVersion read: the Secret written is the one checked.
        body = {**_without_mac(current), "data": _encode(desired.data)}
        await kube.request("PUT", item, body=body)
        return "Updated"

    owner_uid = desired.owner["metadata"]["uid"]
    if current is not None and not is_ours(current, owner_uid) and not desired.overwrite:
        raise DestinationError(
            f"{where} exists and is not managed by this VaultStaticSecret; set"
            " spec.destination.overwrite to true to take it over"
        )
    if current is not None and (current.get("type") or "Opaque") != desired.type:
        # type is immutable: the only way to change it is a new Secret.
        await kube.request(
            "DELETE", item, body={"preconditions": {"uid": current["metadata"]["uid"]}}
        )
        await kube.request("POST", path, body=_new_secret(desired))
        return "Recreated"
    if current is None:
        try:
            await kube.request("POST", path, body=_new_secret(desired))
            return "Created"
        except KubeError as exc:
            if not exc.conflict:
                raise
            # The cache had not seen it yet: read it and apply the same rules.
            current = await kube.request("GET", item)
            return await write(kube, desired, current=current)
    body = {
        **_without_mac(current),
        "metadata": _managed_metadata(desired, current),
        "data": _encode(desired.data),
    }
    body.pop("stringData", None)
    await kube.request("PUT", item, body=body)
    return "Updated"


def _refusal(secret: Mapping[str, Any], desired: Desired) -> str | None:
    """Why ``create: false`` must not write ``secret``, or None."""
    metadata = secret.get("metadata") or {}
    owner_uid = desired.owner["metadata"]["uid"]
    secret_type = secret.get("type") or "Opaque"
    if secret_type not in WRITABLE_TYPES:
        return (f"is of type {secret_type}, which belongs to the program that made it; syncd"
                f" writes only Secrets of type {', '.join(WRITABLE_TYPES)}")
    for reference in metadata.get("ownerReferences") or []:
        if reference.get("controller") and reference.get("uid") != owner_uid:
            return (f"is controlled by {reference.get('kind')} {reference.get('name')}"
                    " (metadata.ownerReferences); syncd does not write another controller's"
                    " Secret")
    annotations = metadata.get("annotations") or {}
    if _CERT_MANAGER in annotations:
        return f"is cert-manager's (annotation {_CERT_MANAGER}); syncd does not write it"
    if is_ours(secret, owner_uid) or annotations.get(DESTINATION_OF) == \
            desired.owner["metadata"]["name"]:
        return None
    return (f"does not opt in: with create: false, syncd writes only a Secret annotated"
            f" {DESTINATION_OF}: {desired.owner['metadata']['name']} (or one it created); add"
            " the annotation, or set spec.destination.create to true for a Secret of syncd's own")


def _new_secret(desired: Desired) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _managed_metadata(desired, None),
        "type": desired.type,
        "data": _encode(desired.data),
    }


__all__ = [
    "CACHED_MAC",
    "DESTINATION_OF",
    "MANAGED_SELECTOR",
    "Desired",
    "DestinationError",
    "DestinationRefused",
    "data_mac",
    "decode_data",
    "in_sync",
    "is_ours",
    "write",
]
