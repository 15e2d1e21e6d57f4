"""The reconcile of one VaultPKISecret: a certificate, re-issued before it expires.

Built from the steps of :class:`syncd.controller.Controller`; what is its own is *when*:

- a new spec, or a destination changed or deleted: issue now (the private key exists only in
  the Secret, so a lost Secret is re-issued, not restored);
- else at ``expiration - expiryOffset``, minus a jitter of up to a tenth of the certificate's
  life (at most a minute) so that certificates issued together are not re-issued together.
  The jitter is derived from the object's uid and serial, so the schedule is a function of the
  status alone and survives restarts; it only ever moves the re-issue *earlier*. An offset
  longer than the certificate's life would re-issue in a loop: the re-issue then waits for
  a quarter of the life at least.

The private key goes into the Secret and nowhere else. The serial number and expiry are in the
status (they are in every TLS handshake anyway).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

import hvac
from structlog.typing import FilteringBoundLogger as BoundLogger

from plumbing.kube import JSON, SECRETS, KubeError
from plumbing.telemetry import tracer
from syncd import leases
from syncd.controller import _ready
from syncd.finalizers import Finalizing
from syncd.fingerprint import fingerprint
from syncd.pki_specs import (
    TLS,
    VAULT_PKI_SECRET,
    VaultPKISecret,
    parse_vault_pki_secret,
)
from syncd.sources import SourceError, failure

#: Held while there is something to undo at deletion (``revoke`` or ``clear``).
FINALIZER = "secrets.vault-syncd.dev/revoke-certificate"
MAX_JITTER_SECONDS = 60.0
_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def due(*, status: JSON, offset: float, uid: str) -> float | None:
    """When the certificate in the status is to be re-issued (None: there is none)."""
    expiration = status.get("expiration")
    issued = status.get("lastRotation")
    if not isinstance(expiration, int | float) or not expiration:
        return None
    start = float(issued) if isinstance(issued, int | float) else 0.0
    life = float(expiration) - start if start else 0.0
    seed = hashlib.sha256(f"{uid}/{status.get('serialNumber')}".encode()).digest()
    jitter = int.from_bytes(seed[:4], "big") / 2**32 * min(life / 10, MAX_JITTER_SECONDS)
    at = expiration - offset - jitter
    if life and at < start + life / 4:
        at = start + life / 4
    return float(at)


def tls_data(data: Mapping[str, Any]) -> dict[str, str]:
    """``tls.crt`` (the certificate, then the chain) and ``tls.key``, from PEM fields."""
    # pem_bundle's "certificate" holds the key, the certificate and the chain: the
    # certificates are taken from it, and the chain added without repeating them.
    blocks = _CERTIFICATE.findall(str(data.get("certificate") or ""))
    chain = [str(c) for c in data.get("ca_chain") or []] or \
        ([str(data["issuing_ca"])] if data.get("issuing_ca") else [])
    for ca in chain:
        blocks.extend(b for b in _CERTIFICATE.findall(ca) if b not in blocks)
    return {"tls.crt": "\n".join(blocks) + "\n",
            "tls.key": str(data.get("private_key") or "")}


class PKISecrets(Finalizing):
    """Reconciles VaultPKISecrets; :meth:`reconcile` is their work queue's worker."""

    resource = VAULT_PKI_SECRET
    finalizer = FINALIZER
    span_name = "syncd.vps.name"

    def parse(self, obj: JSON) -> VaultPKISecret:
        return parse_vault_pki_secret(obj)

    async def sync(self, obj: JSON, *, log: BoundLogger) -> tuple[str, float | None]:
        spec = await self._parse(obj, parse=self.parse, log=log)
        await self._keep_finalizer(obj, wanted=spec.revoke or spec.clear)
        status = self._status.current(obj)
        current, secret_type = self._destination_now(spec)
        previous_mac = status.get("secretMAC") or ""
        now = time.time()
        at = due(status=status, offset=spec.expiry_offset_seconds, uid=spec.uid)
        if status.get("observedGeneration") != spec.generation:
            why = "new spec" if at else "first sync"
        elif not self._destination_intact(spec, current=current, mac=previous_mac) or \
                not _ready(status) or at is None:
            why = "the Secret was changed or deleted"
        elif now < at:
            return "Unchanged", at - now
        else:
            why = "the certificate expires"
        auth, connection, client = await self._connect(obj, spec=spec, log=log)
        vault_namespace = spec.vault_namespace or auth.vault_namespace
        path = f"issuer/{spec.issuer_ref}/issue/{spec.role}" if spec.issuer_ref \
            else f"issue/{spec.role}"
        issued = await self._issue(
            obj, client=client, connection=connection, span="vault.certificate.issue",
            method="POST", mount=spec.mount, path=path, params=spec.request(),
            vault_namespace=vault_namespace, why=why, log=log)
        data: dict[str, Any] = dict(issued.data)
        if secret_type == TLS:
            data.update(tls_data(data))
        rendered = await self._render(obj, spec=spec, kv_type="kv-v1", data=data,
                                      secret_type=secret_type, log=log)
        mac = fingerprint(key=self._hmac_key, data=rendered)
        desired = self._desired(obj, spec=spec, data=rendered, secret_type=secret_type,
                                owner_reference=True)
        written = await self._write(obj, desired=desired, current=current, mac=mac, log=log)
        rotated = bool(previous_mac) and previous_mac != mac
        restarting = rotated and await self._restart(obj, spec=spec, mac=mac)
        old_serial = status.get("serialNumber")
        if spec.revoke and old_serial and old_serial != data.get("serial_number"):
            await self._revoke(obj, spec=spec, client=client, serial=str(old_serial),
                               vault_namespace=vault_namespace, log=log)
        expiration = int(data.get("expiration") or 0)
        if not previous_mac:
            reason, message = "SecretSynced", f"certificate written to Secret {desired.name}"
        else:
            reason, message = ("SecretRotated",
                               f"new certificate in Secret {desired.name} ({why})")
        fields = {"serialNumber": str(data.get("serial_number") or ""),
                  "expiration": expiration, "lastRotation": int(now), "secretMAC": mac}
        await self._synced(obj, reason=reason, message=message, restarting=restarting,
                           fields=fields, event=message)
        log.info("synced", outcome=reason, why=why, written=written,
                 expiration=expiration, data_key_names=sorted(rendered))
        at = due(status=fields, offset=spec.expiry_offset_seconds, uid=spec.uid)
        return reason, max(at - time.time(), 0.0) if at is not None else None

    async def _revoke(
        self, obj: JSON, *, spec: VaultPKISecret, client: hvac.Client, serial: str,
        vault_namespace: str | None, log: BoundLogger,
    ) -> bool:
        """Revoke a certificate; a failure is reported and leaves what was written."""
        where = f"{spec.mount}/revoke"
        with tracer("syncd").start_as_current_span(
            "vault.certificate.revoke", attributes={"vault.mount": spec.mount}
        ) as span:
            try:
                response = await self._pool.run(
                    leases.send, client, "POST", f"v1/{spec.mount}/revoke", where=where,
                    namespace=vault_namespace, json={"serial_number": serial})
                if response.status_code not in (200, 204):
                    raise failure(response, where=where)
            except SourceError as exc:
                span.set_attribute("syncd.result", exc.reason)
                log.warning("certificate not revoked", reason=exc.reason, error=str(exc))
                await self._recorder.post(obj, type="Warning", reason="RevokeFailed",
                                          message=str(exc))
                return False
            span.set_attribute("syncd.result", "ok")
        log.info("certificate revoked", serial=serial)
        return True

    # --- deletion -----------------------------------------------------------------------

    async def undo(self, obj: JSON, *, spec: VaultPKISecret, log: BoundLogger) -> str | None:
        """Revoke the certificate (``revoke``), clear the Secret (``clear``)."""
        serial = (obj.get("status") or {}).get("serialNumber")
        outcome = None
        if spec.revoke and serial:
            auth, _connection, client = await self._connect(obj, spec=spec, log=log)
            if not await self._revoke(obj, spec=spec, client=client, serial=str(serial),
                                      vault_namespace=spec.vault_namespace
                                      or auth.vault_namespace, log=log):
                raise RuntimeError("certificate not revoked; retrying")
            outcome = "CertificateRevoked"
        if spec.clear and not spec.destination.create:
            # A Secret syncd created goes with its owner; one it did not create stays,
            # without the certificate.
            path = SECRETS.path(namespace=spec.namespace, name=spec.destination.name)
            try:
                secret = await self._kube.request("GET", path)
                secret.pop("data", None)
                await self._kube.request("PUT", path, body=secret)
            except KubeError as exc:
                # Not worth keeping the object for: the certificate expires anyway.
                log.warning("Secret not cleared", error=str(exc))
        return outcome

