"""The reconcile of one VaultDynamicSecret: credentials under a lease, renewed, then replaced.

Built from the steps of :class:`syncd.controller.Controller` (parse, connect, render, write,
restart, report); what is its own is *when* to go to Vault, decided by :func:`plan` from the
status alone — so a restarted syncd, or a new leader, carries on with the lease it finds there
(VSO #285: a controller restart rotated every credential and restarted every workload):

- within ``renewalPercent`` of the lease: nothing, not even a Kubernetes read; come back then;
- at ``renewalPercent``: renew the lease (``sys/leases/renew``, the same increment again);
- when it cannot be renewed — not renewable, capped at the role's max TTL, refused by Vault —
  or has expired, the spec changed, or the Secret is gone: new credentials, written, the
  targets restarted once, and then, with ``revoke``, the old lease revoked. Renewal happens at
  ``renewalPercent`` of the lease, so the old credentials still work while the new ones
  roll out;
- static roles (``allowStaticCreds``): no lease; read again when Vault's ``ttl`` says the
  password rotates, and write (and restart) only when it did;
- no lease at all: read again after ``refreshAfter``, if set.

With ``revoke``, a finalizer keeps the object until its lease is revoked.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Literal

import hvac
from structlog.typing import FilteringBoundLogger as BoundLogger

from plumbing.kube import JSON
from plumbing.telemetry import tracer
from syncd import leases
from syncd.controller import _ready
from syncd.dynamic_specs import (
    VAULT_DYNAMIC_SECRET,
    VaultDynamicSecret,
    parse_vault_dynamic_secret,
)
from syncd.finalizers import Finalizing
from syncd.fingerprint import fingerprint
from syncd.sources import SourceError
from syncd.specs import VaultConnection

#: Held while a lease may need revoking (``revoke: true``).
FINALIZER = "secrets.vault-syncd.dev/revoke-lease"
#: Static credentials are read again this long after Vault's ``ttl`` says they rotate.
STATIC_GRACE_SECONDS = 1.0
#: Keys of a static-creds response that change on every read, and are left out of the Secret.
_STATIC_VOLATILE = ("ttl",)

Action = Literal["wait", "renew", "issue"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    action: Action
    #: wait: in how many seconds to look again (None: not before something changes).
    after: float | None = None
    why: str = ""


def plan(
    *, status: JSON, new_spec: bool, destination_ok: bool, now: float,
    renewal_percent: int, refresh_after: float | None,
) -> Plan:
    """What to do now, from the status alone (and whether the Secret is still there)."""
    start = status.get("lastRenewalTime")
    if new_spec or not isinstance(start, int | float) or not start:
        return Plan(action="issue", why="new spec" if start else "first sync")
    if not destination_ok:
        return Plan(action="issue", why="the Secret was changed or deleted")
    lease = status.get("secretLease") or {}
    static = status.get("staticCredsMetaData") or {}
    if lease.get("id"):
        duration = float(lease.get("duration") or 0)
        if now >= start + duration:
            return Plan(action="issue", why="the lease expired")
        due = start + max(duration * renewal_percent / 100, 1.0)
        if now < due:
            return Plan(action="wait", after=due - now)
        if not lease.get("renewable"):
            return Plan(action="issue", why="the lease is not renewable")
        return Plan(action="renew")
    if static:
        due = start + float(static.get("ttl") or 0) + STATIC_GRACE_SECONDS
        if now < due:
            return Plan(action="wait", after=due - now)
        return Plan(action="issue", why="static credentials rotate")
    if refresh_after:
        if now < start + refresh_after:
            return Plan(action="wait", after=start + refresh_after - now)
        return Plan(action="issue", why="refreshAfter")
    return Plan(action="wait", after=None)


class DynamicSecrets(Finalizing):
    """Reconciles VaultDynamicSecrets; :meth:`reconcile` is their work queue's worker."""

    resource = VAULT_DYNAMIC_SECRET
    finalizer = FINALIZER
    span_name = "syncd.vds.name"

    def parse(self, obj: JSON) -> VaultDynamicSecret:
        return parse_vault_dynamic_secret(obj)

    async def sync(self, obj: JSON, *, log: BoundLogger) -> tuple[str, float | None]:
        spec = await self._parse(obj, parse=self.parse, log=log)
        await self._keep_finalizer(obj, wanted=spec.revoke)
        status = self._status.current(obj)
        current, secret_type = self._destination_now(spec)
        previous_mac = status.get("secretMAC") or ""
        destination_ok = self._destination_intact(spec, current=current, mac=previous_mac)
        now = time.time()
        todo = plan(status=status, new_spec=status.get("observedGeneration") != spec.generation,
                    destination_ok=destination_ok and _ready(status), now=now,
                    renewal_percent=spec.renewal_percent,
                    refresh_after=spec.refresh_after_seconds)
        if todo.action == "wait":
            return "Unchanged", todo.after
        auth, connection, client = await self._connect(obj, spec=spec, log=log)
        vault_namespace = spec.vault_namespace or auth.vault_namespace
        why = todo.why
        if todo.action == "renew":
            renewed = await self._renew(obj, spec=spec, client=client, connection=connection,
                                        status=status, vault_namespace=vault_namespace,
                                        now=now, log=log)
            if renewed is not None:
                return "LeaseRenewed", renewed
            why = "the lease cannot be renewed"
        return await self._new_credentials(obj, spec=spec, client=client, connection=connection,
                                           status=status, why=why,
                                           vault_namespace=vault_namespace,
                                           secret_type=secret_type, current=current, now=now,
                                           log=log)

    async def _renew(
        self, obj: JSON, *, spec: VaultDynamicSecret, client: hvac.Client,
        connection: VaultConnection, status: JSON, vault_namespace: str | None, now: float,
        log: BoundLogger,
    ) -> float | None:
        """Renew the lease; when to look again, or None when new credentials are due."""
        lease = status["secretLease"]
        increment = int(lease.get("duration") or 0)
        with tracer("syncd").start_as_current_span(
            "vault.lease.renew", attributes={"vault.mount": spec.mount, "vault.path": spec.path}
        ) as span:
            try:
                duration = await leases.renew(
                    self._pool, client, lease_id=lease["id"], increment=increment,
                    namespace=vault_namespace, where=f"{spec.mount}/{spec.path}")
            except leases.LeaseEnding as exc:
                span.set_attribute("syncd.result", exc.reason)
                log.info("lease not renewed; new credentials", reason=exc.reason,
                         error=str(exc))
                await self._recorder.post(obj, type="Normal", reason=exc.reason,
                                          message=f"{exc}; fetching new credentials")
                return None
            except SourceError as exc:
                span.set_attribute("syncd.result", exc.reason)
                await self._park_if_outage(obj, reason=exc.reason, connection=connection,
                                           log=log)
                await self._fail(obj, reason=exc.reason, message=str(exc))
                log.warning("lease renewal failed", reason=exc.reason, error=str(exc))
                raise
            span.set_attribute("syncd.result", "ok")
        renewed = {**lease, "duration": duration}
        await self._status.update(obj, lambda _: {"secretLease": renewed,
                                                  "lastRenewalTime": int(now)})
        log.info("lease renewed", duration=duration)
        return max(duration * spec.renewal_percent / 100, 1.0)

    async def _new_credentials(
        self, obj: JSON, *, spec: VaultDynamicSecret, client: hvac.Client,
        connection: VaultConnection, status: JSON, why: str, vault_namespace: str | None,
        secret_type: str, current: JSON | None, now: float, log: BoundLogger,
    ) -> tuple[str, float | None]:
        """New credentials, written; the targets restarted; the old lease revoked."""
        issued = await self._issue(
            obj, client=client, connection=connection, span="vault.issue", method=spec.method,
            mount=spec.mount, path=spec.path, params=spec.params,
            vault_namespace=vault_namespace, why=why, log=log)
        data: dict[str, Any] = dict(issued.data)
        static: JSON | None = None
        if spec.allow_static_creds and not issued.lease_id:
            static = _static_metadata(data)
            for volatile in _STATIC_VOLATILE:
                data.pop(volatile, None)
        rendered = await self._render(obj, spec=spec, kv_type="kv-v1", data=data,
                                      secret_type=secret_type, log=log)
        mac = fingerprint(key=self._hmac_key, data=rendered)
        previous_mac = status.get("secretMAC") or ""
        desired = self._desired(obj, spec=spec, data=rendered, secret_type=secret_type,
                                owner_reference=True)
        written = ""
        if mac != previous_mac or current is None or \
                status.get("observedGeneration") != spec.generation:
            written = await self._write(obj, desired=desired, current=current, mac=mac, log=log)
        rotated = bool(previous_mac) and previous_mac != mac
        restarting = rotated and await self._restart(obj, spec=spec, mac=mac)
        old = status.get("secretLease") or {}
        if spec.revoke and old.get("id") and old.get("id") != issued.lease_id:
            await self._revoke(obj, spec=spec, client=client, lease_id=old["id"],
                               vault_namespace=vault_namespace, log=log)
        lease = {"id": issued.lease_id, "duration": issued.lease_duration,
                 "renewable": issued.renewable, "requestID": issued.request_id}
        if not previous_mac:
            reason, message = "SecretSynced", f"synced to Secret {spec.destination.name}"
        elif rotated:
            reason, message = ("SecretRotated",
                               f"new credentials in Secret {spec.destination.name} ({why})")
        else:
            reason, message = "SecretSynced", f"Secret {spec.destination.name} is current"
        await self._synced(
            obj, reason=reason, message=message, restarting=restarting,
            fields={"secretLease": lease if issued.lease_id else None,
                    "lastRenewalTime": int(now), "staticCredsMetaData": static,
                    "secretMAC": mac},
            event=bool(written or rotated) and message,
        )
        log.info("synced", outcome=reason, why=why, written=written or "no",
                 lease_duration=issued.lease_duration, renewable=issued.renewable,
                 data_key_names=sorted(rendered))
        # From the exact time, not the status's whole seconds: renewals at the percent asked.
        fresh = {"lastRenewalTime": now, "secretLease": lease if issued.lease_id else {},
                 "staticCredsMetaData": static}
        after = plan(status=fresh, new_spec=False, destination_ok=True, now=now,
                     renewal_percent=spec.renewal_percent,
                     refresh_after=spec.refresh_after_seconds).after
        return reason, after

    async def _revoke(
        self, obj: JSON, *, spec: VaultDynamicSecret, client: hvac.Client, lease_id: str,
        vault_namespace: str | None, log: BoundLogger,
    ) -> bool:
        """Revoke a lease; a failure is reported, and does not undo what was written."""
        with tracer("syncd").start_as_current_span(
            "vault.lease.revoke", attributes={"vault.mount": spec.mount, "vault.path": spec.path}
        ) as span:
            try:
                await leases.revoke(self._pool, client, lease_id=lease_id,
                                    namespace=vault_namespace,
                                    where=f"{spec.mount}/{spec.path}")
            except SourceError as exc:
                span.set_attribute("syncd.result", exc.reason)
                log.warning("lease not revoked", reason=exc.reason, error=str(exc))
                await self._recorder.post(obj, type="Warning", reason="LeaseRevokeFailed",
                                          message=str(exc))
                return False
            span.set_attribute("syncd.result", "ok")
        log.info("lease revoked")
        return True

    # --- deletion -----------------------------------------------------------------------

    async def undo(
        self, obj: JSON, *, spec: VaultDynamicSecret, log: BoundLogger
    ) -> str | None:
        """Revoke the lease (``revoke``)."""
        lease_id = ((obj.get("status") or {}).get("secretLease") or {}).get("id")
        if not (spec.revoke and lease_id):
            return None
        auth, _connection, client = await self._connect(obj, spec=spec, log=log)
        if not await self._revoke(obj, spec=spec, client=client, lease_id=lease_id,
                                  vault_namespace=spec.vault_namespace or auth.vault_namespace,
                                  log=log):
            raise RuntimeError("lease not revoked; retrying")
        return "LeaseRevoked"


def _static_metadata(data: JSON) -> JSON:
    """``staticCredsMetaData`` (VSO's names) from a static-creds response."""
    rotated = data.get("last_vault_rotation")
    last = 0
    if isinstance(rotated, str):
        try:
            # Vault writes nanoseconds; fromisoformat takes at most microseconds.
            head, _, tail = rotated.partition(".")
            zone = tail.lstrip("0123456789")
            last = int(dt.datetime.fromisoformat(head + (zone or "Z")).timestamp())
        except ValueError:
            last = 0
    return {
        "lastVaultRotation": last,
        "rotationPeriod": int(data.get("rotation_period") or 0),
        "rotationSchedule": str(data.get("rotation_schedule") or ""),
        "ttl": int(data.get("ttl") or 0),
    }
