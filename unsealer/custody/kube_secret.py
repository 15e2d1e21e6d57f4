"""Shares in one Kubernetes Secret, in a namespace other than Vault's.

Whoever can read Secrets in Vault's namespace (Vault's own operators, a compromised Vault pod's
service account) must not find shares there too, so the config refuses a Secret in Vault's
namespace (:mod:`.config`). The RBAC this needs is narrow: ``get`` on the one named Secret
(``resourceNames``) to unseal; ``create`` and ``patch`` only for ``unsealer init``/``import``.

Layout: each share is a data key ``<keyPrefix><n>`` (``share-1``, ``share-2``...) whose value
is the share text as Vault prints it, so ``kubectl create secret generic unseal-a
--from-literal=share-1=<key>`` makes a valid custodian by hand. An age identity this custodian
holds for another one sits under ``identityKey``. The Secret carries no ownerReferences: garbage
collection once deleted bank-vaults users' only copy of their keys (bank-vaults#852).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import aiohttp

from plumbing.kube import JSON, MERGE_PATCH, SECRETS, Kube, KubeError
from unsealer.custody.custodian import CustodyError, Entry
from unsealer.shares import zero

MANAGED_BY = {"app.kubernetes.io/managed-by": "vault-syncd-unsealer"}


class KubeSecretBackend:
    writable = True

    def __init__(
        self,
        *,
        custodian: str,
        kube: Kube,
        namespace: str,
        secret_name: str,
        key_prefix: str = "share-",
        identity_key: str | None = None,
    ) -> None:
        self.custodian = custodian
        self.namespace = namespace
        self.secret_name = secret_name
        self.key_prefix = key_prefix
        self.identity_key = identity_key
        self._kube = kube
        self._slot = re.compile(rf"{re.escape(key_prefix)}([1-9][0-9]*)")

    def describe(self) -> str:
        identity = f", age identity under {self.identity_key!r}" if self.identity_key else ""
        return (
            f"Secret {self.namespace}/{self.secret_name} (keys {self.key_prefix}1.."
            f"{identity})"
        )

    async def read_entries(self, *, missing_ok: bool = False) -> list[Entry]:
        data = await self._read_data(missing_ok=missing_ok)
        slots = sorted(
            ((int(match[1]), key) for key in data if (match := self._slot.fullmatch(key))),
        )
        return [(key, self._decode(key, data[key])) for _number, key in slots]

    async def read_identity(self) -> bytearray | None:
        if self.identity_key is None:
            return None
        data = await self._read_data(missing_ok=False)
        value = data.get(self.identity_key)
        return self._decode(self.identity_key, value) if value else None

    async def write_entries(self, entries: Sequence[bytearray]) -> None:
        values = {
            f"{self.key_prefix}{number}": base64.b64encode(entry).decode("ascii")
            for number, entry in enumerate(entries, start=1)
        }
        secret = await self._get(missing_ok=True)
        try:
            if secret is None:
                await self._kube.request(
                    "POST",
                    SECRETS.path(namespace=self.namespace),
                    body={
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {
                            "name": self.secret_name,
                            "namespace": self.namespace,
                            "labels": dict(MANAGED_BY),
                        },
                        "type": "Opaque",
                        "data": values,
                    },
                )
                return
            # Drop share keys beyond the new set, keep everything else (an identity, notes).
            wanted: dict[str, str | None] = dict(values)
            for key in _data_of(secret):
                if self._slot.fullmatch(key) and key not in wanted:
                    wanted[key] = None
            # A merge patch: ``None`` deletes a key of ``data``. The resourceVersion makes it
            # conditional: 409 if someone wrote in between.
            metadata = secret.get("metadata") or {}
            await self._kube.request(
                "PATCH",
                SECRETS.path(namespace=self.namespace, name=self.secret_name),
                body={
                    "metadata": {"resourceVersion": metadata.get("resourceVersion")},
                    "data": wanted,
                },
                content_type=MERGE_PATCH,
            )
        except KubeError as exc:
            raise self._api_error("write", exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        except ValueError:
            raise self._malformed() from None

    async def _read_data(self, *, missing_ok: bool) -> dict[str, str]:
        secret = await self._get(missing_ok=missing_ok)
        return _data_of(secret) if secret is not None else {}

    async def _get(self, *, missing_ok: bool) -> JSON | None:
        try:
            return await self._kube.request(
                "GET", SECRETS.path(namespace=self.namespace, name=self.secret_name)
            )
        except KubeError as exc:
            if exc.not_found and missing_ok:
                return None
            if exc.not_found:
                raise CustodyError(
                    f"Secret {self.namespace}/{self.secret_name} does not exist",
                    custodian=self.custodian,
                ) from None
            raise self._api_error("read", exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        except ValueError:
            # A reply that is not JSON. Its text is not ours to show: it could be the Secret.
            raise self._malformed() from None

    def _decode(self, key: str, value: str) -> bytearray:
        return decode_value(
            value, where=f"Secret {self.namespace}/{self.secret_name} key {key}",
            custodian=self.custodian,
        )

    def _api_error(self, verb: str, exc: KubeError) -> CustodyError:
        return api_error(verb, exc, namespace=self.namespace, name=self.secret_name,
                         custodian=self.custodian)

    def _unreachable(self, exc: BaseException) -> CustodyError:
        return unreachable(exc, namespace=self.namespace, name=self.secret_name,
                           custodian=self.custodian)

    def _malformed(self) -> CustodyError:
        return CustodyError(
            f"the Kubernetes API sent a malformed reply for Secret {self.namespace}/"
            f"{self.secret_name}",
            custodian=self.custodian,
        )


def decode_value(value: Any, *, where: str, custodian: str) -> bytearray:
    """A Secret data value, base64-decoded and stripped, in a buffer the caller wipes."""
    try:
        decoded = bytearray(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise CustodyError(f"{where} is not base64", custodian=custodian) from None
    stripped = decoded.strip()
    zero(decoded)
    return stripped


def api_error(
    verb: str, exc: KubeError, *, namespace: str, name: str, custodian: str
) -> CustodyError:
    """A refused request on a custody Secret, in our words (with the RBAC it needs)."""
    # KubeError carries the API server's Status, never the Secret's data; still, only the
    # status code and reason go into the message, not the Status message.
    hint = ""
    if exc.status == 403:
        verbs = "get" if verb == "read" else "get, create and patch"
        hint = f" (RBAC: this service account needs {verbs} on that Secret)"
    elif exc.status == 409:
        hint = " (changed concurrently; retry)"
    return CustodyError(
        f"cannot {verb} Secret {namespace}/{name}: {exc.status} {exc.reason}{hint}",
        custodian=custodian,
    )


def unreachable(exc: BaseException, *, namespace: str, name: str, custodian: str) -> CustodyError:
    return CustodyError(
        f"cannot reach the Kubernetes API for Secret {namespace}/{name}: {type(exc).__name__}",
        custodian=custodian,
    )


def _data_of(secret: JSON) -> dict[str, str]:
    data = secret.get("data")
    return dict(data) if isinstance(data, dict) else {}
