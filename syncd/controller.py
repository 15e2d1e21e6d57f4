"""The reconcile of one VaultStaticSecret: read the source, render, write if changed, restart.

Each step can fail on its own terms, and each failure keeps what the user already has: the
destination Secret is written only from a successful read and a successful render, and only
when its data differs. Every outcome is a status condition, a log line, a span, and — when a
person should know — an Event.

Change detection is by keyed fingerprint (``status.secretMAC``), which survives restarts:

- first sync (no fingerprint yet): write, no restart;
- same fingerprint, destination as it should be: nothing at all, not even a Kubernetes read;
- same fingerprint, destination edited or deleted by someone: restore it (drift), no restart;
- new fingerprint: write, then restart the targets (debounced, see :mod:`syncd.rollout`).

Restarting syncd therefore restarts nothing: the fingerprint in the status already matches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol, TypeVar, cast

import structlog
from structlog.typing import FilteringBoundLogger as BoundLogger

from plumbing.events import EventRecorder
from plumbing.kube import JSON, Kube, KubeError
from plumbing.telemetry import tracer
from plumbing.vault import VaultClient, VaultPool
from plumbing.watching import Informer, key_of
from syncd import sources
from syncd.auth_globals import GlobalError, merge_auth_global
from syncd.destinations import Desired, DestinationError, data_mac, in_sync, write
from syncd.fingerprint import fingerprint
from syncd.outages import OUTAGE_REASONS, Outage, Outages
from syncd.rendering import KVType, RenderError, SecretData, Templates, render
from syncd.rollout import Result, Rollouts, Workload
from syncd.spec_cache import Lookup, SpecCache
from syncd.specs import (
    AutoTarget,
    Destination,
    NamedTarget,
    ObjectRef,
    RolloutRestartTarget,
    SelectorTarget,
    SpecError,
    VaultAuth,
    VaultConnection,
    VaultStaticSecret,
    parse_vault_auth,
    parse_vault_connection,
    parse_vault_static_secret,
)
from syncd.status import (
    READY,
    ROLLOUT_RESTART,
    SYNCED,
    ConditionStatus,
    StatusWriter,
    now,
    set_condition,
)
from syncd.transformations import TransformationError, resolve_transformation_refs
from syncd.vault_clients import AuthError, VaultClients

Key = tuple[str, str]


class Synced(Protocol):
    """What the shared steps need of a spec: every kind that writes a Secret has it."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def vault_auth_ref(self) -> ObjectRef | None: ...
    @property
    def destination(self) -> Destination: ...
    @property
    def rollout_restart_targets(self) -> tuple[RolloutRestartTarget, ...]: ...
    @property
    def warnings(self) -> tuple[str, ...]: ...


S = TypeVar("S", bound=Synced)

#: A read failing with the reason the status already shows, written less than this many seconds
#: ago, leaves the status as it is (a retry storm is not a status-write storm).
REWRITE_FAILURE_AFTER = 10.0


class Outcome(Exception):
    """A step ended the reconcile, already reported; ``reason`` is the outcome."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Parked(Outcome):
    """The object waits for its VaultConnection to answer again (:mod:`syncd.outages`): no
    retry of its own; the connection's probe puts it back in the queue."""


class NotReady(Exception):
    """A precondition is missing (auth, connection); retried with backoff, reported."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Caches:
    static_secrets: Informer
    auths: Informer
    connections: Informer
    secrets: Informer
    #: VaultAuthGlobals and SecretTransformations (None: no such references are resolved).
    auth_globals: Informer | None = None
    transformations: Informer | None = None


class Controller:
    """Reconciles VaultStaticSecrets; :meth:`reconcile` is the work queue's worker."""

    def __init__(
        self,
        *,
        caches: Caches,
        clients: VaultClients,
        pool: VaultPool,
        recorder: EventRecorder,
        status: StatusWriter,
        kube: Kube,
        hmac_key: bytes,
        operator_namespace: str,
        templates: Templates,
        debounce_seconds: float = 2.0,
        owners: Informer | None = None,
        outages: Outages | None = None,
    ) -> None:
        self._caches = caches
        #: The objects this controller reconciles (default: the VaultStaticSecrets).
        self.owners = self._owners = owners if owners is not None else caches.static_secrets
        self._templates = templates
        self._clients = clients
        #: Connections that are down, and the objects parked on them (None: no parking).
        self._outages = outages
        self._pool = pool
        self.rollouts = Rollouts(kube=kube, report=self.report_rollout, debounce=debounce_seconds)
        self._recorder = recorder
        self._status = status
        self._kube = kube
        self._hmac_key = hmac_key
        self._operator_namespace = operator_namespace
        #: (namespace, Secret name) -> the VaultStaticSecret writing it: how drift finds owners.
        self.destinations: dict[Key, Key] = {}
        #: The reverse: VaultStaticSecret -> the Secret it last said it writes.
        self._destination_of: dict[Key, Key] = {}
        #: VaultStaticSecret -> the fingerprint of the data this process last wrote for it. The
        #: watch event of our own write arrives before the status holding the new fingerprint,
        #: so drift is judged against this too; otherwise every sync looks like drift.
        self._written: dict[Key, str] = {}
        #: VaultStaticSecrets whose Secret is being written right now: the watch events of that
        #: write (the DELETE of a recreation, say) are ours, not drift.
        self._writing: set[Key] = set()
        #: VaultStaticSecret -> the workloads of its latest rotation and what became of each
        #: (None: not reported yet). Each workload reports on its own; the RolloutRestart
        #: condition sums all of them up, so the last report cannot hide an earlier failure.
        self._rollout_results: dict[Key, dict[Workload, Result | None]] = {}
        #: The failure reason last written to each failing object's status, and when (loop
        #: time): a read failing again the same way within REWRITE_FAILURE_AFTER s writes no
        #: status (see _read).
        self._failure_written: dict[Key, tuple[str, float]] = {}
        #: Parsed specs, kept while what they were parsed from is unchanged
        #: (:mod:`syncd.spec_cache`): the owners by key, VaultAuths and VaultConnections by
        #: reference.
        self._specs: SpecCache[Key] = SpecCache()
        self._auth_specs: SpecCache[Key] = SpecCache()
        self._connection_specs: SpecCache[Key] = SpecCache()
        self._log = structlog.get_logger("syncd")

    # --- the reconcile ------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        obj = self._owners.get(*key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.forget(key)
            return None
        namespace, name = key
        with tracer("syncd").start_as_current_span(
            "reconcile", attributes={"k8s.namespace.name": namespace, "syncd.vss.name": name}
        ) as span:
            outcome = await self._reconcile(obj)
            span.set_attribute("syncd.outcome", outcome)
        return None

    async def _reconcile(self, obj: JSON) -> str:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        log = self._log.bind(namespace=namespace, name=name)
        try:
            spec = await self._parse(obj, parse=parse_vault_static_secret, log=log)
            auth, connection, client = await self._connect(obj, spec=spec, log=log)
            source = await self._read(obj, spec=spec, auth=auth, connection=connection,
                                      client=client, log=log)
            current, secret_type = self._destination_now(spec)
            rendered = await self._render(obj, spec=spec, kv_type=spec.kv_type,
                                          data=source.raw, secret_type=secret_type, log=log)
            mac = fingerprint(key=self._hmac_key, data=rendered)
            status = self._status.current(obj)  # the cache may not show our last write yet
            previous_mac = status.get("secretMAC") or ""
            desired = self._desired(obj, spec=spec, data=rendered, secret_type=secret_type,
                                    owner_reference=spec.deletion_policy == "Delete", mac=mac)
            unchanged = previous_mac == mac and status.get("observedGeneration") == spec.generation
            # A Secret we do not own is not cached: trust the fingerprint for it.
            needs_write = not in_sync(desired, current, key=self._hmac_key) \
                if spec.destination.create \
                else not unchanged
            if unchanged and not needs_write and _ready(status):
                log.debug("unchanged", version=source.version)
                return "Unchanged"
            written = await self._write(obj, desired=desired, current=current, mac=mac,
                                        log=log) if needs_write else ""
        except Outcome as exc:
            return exc.reason

        rotated = bool(previous_mac) and previous_mac != mac
        restarting = rotated and spec.hmac_secret_data and await self._restart(
            obj, spec=spec, mac=mac)
        reason, message = _sync_reason(
            destination=spec.destination.name, previous_mac=previous_mac, rotated=rotated,
            written=written, new_spec=status.get("observedGeneration") != spec.generation)
        version_note = f" (version {source.version})" if source.version else ""
        await self._synced(
            obj, reason=reason, message=message + version_note, restarting=restarting,
            fields={"sourceVersion": source.version,
                    "secretMAC": mac if spec.hmac_secret_data else None},
            event=bool(written or rotated or not previous_mac) and message,
        )
        log.info(
            "synced", outcome=reason, written=written or "no", version=source.version,
            data_key_names=sorted(rendered),
        )
        return reason

    # --- the steps of a reconcile, shared by every kind (see syncd.dynamic) --------------
    #
    # A step that fails reports it (status, Event, log) and raises Outcome, or re-raises what
    # the queue should retry with backoff.

    async def _parse(self, obj: JSON, *, parse: Callable[[JSON], S], log: BoundLogger) -> S:
        """The spec of ``obj``, its transformationRefs folded in; its destination remembered."""
        generation = int(obj["metadata"].get("generation") or 0)
        try:
            spec = self._specs.parsed(
                key_of(obj), obj, parse=lambda o, lookup: parse(
                    self._with_transformations(o, lookup=lookup)),
                lookup=_lookup(self._caches.transformations))
        except TransformationError as exc:
            await self._fail(obj, reason=exc.reason, message=str(exc), ready_only=True)
            log.warning("transformationRefs not resolved", reason=exc.reason, error=str(exc))
            raise Outcome(exc.reason) from None
        except SpecError as exc:
            await self._fail(obj, reason="InvalidSpec", message=str(exc), ready_only=True)
            log.warning("invalid spec", error=str(exc))
            raise Outcome("InvalidSpec") from None
        # It reads the namespace, name and destination of any kind.
        self._remember_destination(cast(VaultStaticSecret, spec))
        if spec.warnings and (obj.get("status") or {}).get("observedGeneration") != generation:
            # Valid but without effect (labels with create: false...): say so once per spec.
            await self._recorder.post(
                obj, type="Warning", reason="IneffectiveSettings",
                message="; ".join(spec.warnings),
            )
        return spec

    async def _connect(
        self, obj: JSON, *, spec: Synced, log: BoundLogger
    ) -> tuple[VaultAuth, VaultConnection, VaultClient]:
        """The VaultAuth and VaultConnection ``spec`` uses, and a client logged in with them."""
        try:
            auth, connection = self.resolve(spec)
            await self._park_if_down(obj, connection=connection, log=log)
            client = await self._clients.get(namespace=spec.namespace, auth=auth,
                                             connection=connection)
        except (NotReady, AuthError) as exc:
            reason = getattr(exc, "reason", "VaultAuthFailed")
            if isinstance(exc, AuthError):  # the login: Vault may be away
                await self._park_if_outage(obj, reason=reason, connection=connection, log=log)
            elif self._outages is not None:  # no connection any more: nothing to wait for
                self._outages.release(kind=self.kind, key=key_of(obj))
            await self._fail(obj, reason=reason, message=str(exc))
            log.warning("not ready", reason=reason, error=str(exc))
            raise
        return auth, connection, client

    async def _read(
        self, obj: JSON, *, spec: VaultStaticSecret, auth: VaultAuth,
        connection: VaultConnection, client: VaultClient, log: BoundLogger,
    ) -> sources.SourceData:
        with tracer("syncd").start_as_current_span(
            "vault.read", attributes={"vault.mount": spec.mount, "vault.path": spec.path,
                                      "vault.kv_type": spec.kv_type}
        ) as span:
            try:
                source = await sources.read(
                    client, kv_type=spec.kv_type, mount=spec.mount,
                    path=spec.path, version=spec.version,
                    namespace=spec.vault_namespace or auth.vault_namespace,
                )
            except sources.SourceError as exc:
                span.set_attribute("syncd.error.reason", exc.reason)
                if isinstance(exc, sources.SourceForbidden):
                    self._clients.forget(namespace=spec.namespace, auth=auth,
                                         connection=connection, client=client)
                await self._park_if_outage(obj, reason=exc.reason, connection=connection,
                                           log=log, error=exc)
                if self._fails_again(obj, reason=exc.reason):
                    # Retrying reads that fail the same way (a path answering 500 and 503 in
                    # turn) would rewrite the status's message on every retry: a status write
                    # per retry per object. The Event still tells each distinct message.
                    await self._recorder.post(obj, type="Warning", reason=exc.reason,
                                              message=str(exc))
                else:
                    await self._fail(obj, reason=exc.reason, message=str(exc))
                log.warning("vault read failed", reason=exc.reason, error=str(exc))
                if exc.retry:
                    raise
                raise Outcome(exc.reason) from None
            if source.version is not None:
                span.set_attribute("vault.kv.version", source.version)
        if self._outages is not None:  # Vault answers through this connection
            self._outages.report(connection, kind=self.kind, key=key_of(obj), error=None)
        return source

    # --- outages (syncd.outages): a Vault that is away parks its objects ---------------------

    async def _park_if_down(self, obj: JSON, *, connection: VaultConnection,
                            log: BoundLogger) -> None:
        """Park ``obj`` before any Vault request if its connection is down."""
        if self._outages is None:
            return
        outage = self._outages.down(connection)
        if outage is None:
            # Parked on another connection (its spec or VaultAuth changed): waits no more.
            self._outages.release(kind=self.kind, key=key_of(obj))
            return
        if outage.canary == (self.kind, key_of(obj)):
            return  # its read probes the connection for every parked object
        await self._park(obj, outage, log=log)

    async def _park_if_outage(self, obj: JSON, *, reason: str, connection: VaultConnection,
                              log: BoundLogger, error: BaseException | None = None) -> None:
        """After a failed Vault request: park ``obj`` if Vault itself is away (one probe per
        connection decides) or, for a KV read's ``error``, if the reads of its connection
        fail on the way while sys/health answers; return if the failure was its own."""
        if self._outages is None:
            return
        outage = None
        if reason in OUTAGE_REASONS:
            outage = await self._outages.confirm(connection)
        if error is not None:  # after the probe: only reads failing while it answers count
            outage = self._outages.report(connection, kind=self.kind, key=key_of(obj),
                                          error=error) or outage
        if outage is not None:
            await self._park(obj, outage, log=log)

    async def _park(self, obj: JSON, outage: Outage, *, log: BoundLogger) -> NoReturn:
        assert self._outages is not None
        if self._outages.park(outage, kind=self.kind, key=key_of(obj)):
            # Once per object and outage, never per probe.
            await self._fail(obj, reason=outage.reason, message=outage.message)
            log.warning("waiting for vault", reason=outage.reason, problem=outage.problem)
        raise Parked(outage.reason) from None

    @property
    def kind(self) -> str:
        """The plural of the kind reconciled (its work queue is its own)."""
        return self._owners.resource.plural

    def parse(self, obj: JSON) -> Any:
        """The spec of ``obj`` (raises :class:`SpecError`)."""
        return parse_vault_static_secret(obj)

    def retry_bound(self, key: Key) -> float | None:
        """The longest a failing object waits for its retry (the work queue's cap for it): its
        ``refreshAfter``, the user's bound on staleness; None: the queue's own cap."""
        obj = self._owners.get(*key)
        if obj is None:
            return None
        try:
            bound = getattr(self.parse(obj), "refresh_after_seconds", None)
        except SpecError:
            return None
        return float(bound) if bound else None

    def _destination_now(self, spec: Synced) -> tuple[JSON | None, str]:
        """The destination Secret as cached (None: absent, or not ours), and its type."""
        destination = spec.destination
        current = self._caches.secrets.get(spec.namespace, destination.name)
        secret_type = destination.type
        if not destination.create and current is not None:
            secret_type = current.get("type") or secret_type
        return current, secret_type

    def _destination_intact(self, spec: Synced, *, current: JSON | None, mac: str) -> bool:
        """Whether the destination still holds the data of fingerprint ``mac`` (a Secret
        syncd did not create is not cached: trusted)."""
        if not spec.destination.create:
            return True
        return current is not None and bool(mac) and \
            data_mac(current, key=self._hmac_key) == mac

    async def _render(
        self, obj: JSON, *, spec: Synced, kv_type: KVType, data: Mapping[str, Any],
        secret_type: str, log: BoundLogger,
    ) -> SecretData:
        try:
            return await render(
                kv_type=kv_type, data=data, templates=self._templates,
                transformation=spec.destination.transformation, labels=spec.labels,
                annotations=spec.annotations, secret_type=secret_type, tenant=spec.namespace,
            )
        except RenderError as exc:
            await self._fail(obj, reason=exc.reason, message=str(exc))
            log.warning("render failed", reason=exc.reason, error=str(exc))
            if exc.retry:  # over budget: back off, and let the others have the workers
                raise
            raise Outcome(exc.reason) from None

    def _desired(
        self, obj: JSON, *, spec: Synced, data: SecretData, secret_type: str,
        owner_reference: bool, mac: str = "",
    ) -> Desired:
        destination = spec.destination
        return Desired(
            namespace=spec.namespace, name=destination.name, type=secret_type,
            create=destination.create, overwrite=destination.overwrite, owner=obj,
            data=data, labels=destination.labels, annotations=destination.annotations,
            owner_reference=owner_reference,
            mac=mac or fingerprint(key=self._hmac_key, data=data),
        )

    async def _write(
        self, obj: JSON, *, desired: Desired, current: JSON | None, mac: str, log: BoundLogger
    ) -> str:
        """Write the destination; what was done (Created, Updated...)."""
        key = key_of(obj)
        with tracer("syncd").start_as_current_span(
            "secret.write", attributes={"k8s.secret.name": desired.name}
        ) as span:
            try:
                self._written[key] = mac
                self._writing.add(key)
                written = await write(self._kube, desired, current=current)
            except DestinationError as exc:
                await self._fail(obj, reason=exc.reason, message=str(exc))
                log.warning("destination refused", error=str(exc))
                raise Outcome(exc.reason) from None
            finally:
                self._writing.discard(key)
            span.set_attribute("syncd.write", written)
        return written

    async def _restart(self, obj: JSON, *, spec: Synced, mac: str) -> bool:
        """Request the (debounced) restart of the targets; whether there is any."""
        if not spec.rollout_restart_targets:
            return False
        workloads = await self._targets(spec)
        if not workloads:
            return False
        self._rollout_results[key_of(obj)] = dict.fromkeys(workloads)
        self.rollouts.request(
            workloads=workloads, secret=spec.destination.name, fingerprint=mac, owner=obj
        )
        return True

    async def _synced(
        self, obj: JSON, *, reason: str, message: str, restarting: bool, fields: JSON,
        event: str | Literal[False],
    ) -> None:
        """Synced and Ready, with ``fields`` in the status; the Event ``event`` if any."""
        generation = int(obj["metadata"].get("generation") or 0)
        key = key_of(obj)
        self._failure_written.pop(key, None)

        def synced(current: JSON) -> JSON:
            conditions = list(current.get("conditions") or [])
            if restarting:
                conditions = self._with_rollout(conditions, key, generation)
            for kind in (SYNCED, READY):
                conditions = set_condition(
                    conditions, type=kind, status="True", reason=reason,
                    message=message, generation=generation,
                )
            return {
                "conditions": conditions,
                "observedGeneration": generation,
                "lastGeneration": generation,
                **fields,
                "lastSyncTime": now(),
            }

        if not event:
            await self._status.update(obj, synced)
            return
        # Side by side: the Event does not depend on the status (a first sync's four round
        # trips become three). Posting never raises; the status write's error is re-raised
        # once both are done, so nothing is left running.
        written, _ = await asyncio.gather(
            self._status.update(obj, synced),
            self._recorder.post(obj, type="Normal", reason=reason, message=event),
            return_exceptions=True)
        if isinstance(written, BaseException):
            raise written

    # --- parts --------------------------------------------------------------------------

    def resolve(self, spec: Synced) -> tuple[VaultAuth, VaultConnection]:
        """The VaultAuth and VaultConnection ``spec`` reads with; raises :class:`NotReady`."""
        self._auth_specs.prune_gone(self._caches.auths.get)
        self._connection_specs.prune_gone(self._caches.connections.get)
        reference = spec.vault_auth_ref or ObjectRef(
            namespace=self._operator_namespace, name="default"
        )
        auth_obj = self._caches.auths.get(reference.namespace, reference.name)
        if auth_obj is None:
            raise NotReady(
                f"spec.vaultAuthRef: VaultAuth {reference} not found"
                + _unwatched(self._caches.auths, reference.namespace),
                reason="VaultAuthNotFound",
            )
        try:
            auth = self._auth_specs.parsed(
                (reference.namespace, reference.name), auth_obj,
                parse=lambda o, lookup: parse_vault_auth(self._with_global(o, lookup=lookup)),
                lookup=_lookup(self._caches.auth_globals))
        except GlobalError as exc:
            raise NotReady(f"spec.vaultAuthRef: {exc}", reason=exc.reason) from None
        except SpecError as exc:
            raise NotReady(f"spec.vaultAuthRef: {exc}", reason="VaultAuthInvalid") from None
        if not auth.allows(spec.namespace, operator_namespace=self._operator_namespace):
            raise NotReady(
                f"spec.vaultAuthRef: VaultAuth {reference} does not allow namespace"
                f" {spec.namespace} (spec.allowedNamespaces)", reason="VaultAuthNotAllowed",
            )
        connection_ref = auth.vault_connection_ref or ObjectRef(
            namespace=self._operator_namespace, name="default"
        )
        connection_obj = self._caches.connections.get(
            connection_ref.namespace, connection_ref.name
        )
        if connection_obj is None:
            raise NotReady(
                f"VaultAuth {reference}: spec.vaultConnectionRef: VaultConnection"
                f" {connection_ref} not found"
                + _unwatched(self._caches.connections, connection_ref.namespace),
                reason="VaultConnectionNotFound",
            )
        try:
            connection = self._connection_specs.parsed(
                (connection_ref.namespace, connection_ref.name), connection_obj,
                parse=lambda o, _: parse_vault_connection(o), lookup=_lookup(None))
        except SpecError as exc:
            raise NotReady(f"VaultConnection: {exc}", reason="VaultConnectionInvalid") from None
        return auth, connection

    def _with_global(self, auth_obj: JSON, *, lookup: Lookup) -> JSON:
        """The VaultAuth with its VaultAuthGlobal (found by ``lookup``) merged in
        (:mod:`syncd.auth_globals`)."""
        return merge_auth_global(auth_obj, lookup=lookup,
                                 operator_namespace=self._operator_namespace)

    def _with_transformations(self, obj: JSON, *, lookup: Lookup) -> JSON:
        """The VaultStaticSecret with its transformationRefs (found by ``lookup``) folded in
        (:mod:`syncd.transformations`), so that they render as inline templates do."""
        return resolve_transformation_refs(obj, lookup=lookup,
                                           operator_namespace=self._operator_namespace)

    async def _targets(self, spec: Synced) -> list[Workload]:
        named = [(t.kind, t.name) for t in spec.rollout_restart_targets
                 if isinstance(t, NamedTarget)]
        selectors = [(t.kind, t.selector.to_query()) for t in spec.rollout_restart_targets
                     if isinstance(t, SelectorTarget)]
        auto = any(isinstance(t, AutoTarget) for t in spec.rollout_restart_targets)
        try:
            return await self.rollouts.find(
                namespace=spec.namespace, secret=spec.destination.name, named=named,
                selectors=selectors, auto=auto,
            )
        except KubeError as exc:
            self._log.warning("rollout targets not found", error=str(exc))
            return [Workload(kind, spec.namespace, name) for kind, name in named]

    async def report_rollout(self, owner: JSON, results: list[Result]) -> None:
        """Record what the debounced restarts did on their owner (called by Rollouts)."""
        key = (owner["metadata"]["namespace"], owner["metadata"]["name"])
        obj = self._owners.get(*key) or owner
        generation = int(obj["metadata"].get("generation") or 0)
        entries = self._rollout_results.setdefault(key, {})
        for result in results:
            entries[result.workload] = result
        try:
            await self._status.update(obj, lambda current: {"conditions": self._with_rollout(
                list(current.get("conditions") or []), key, generation)})
        except KubeError as exc:
            self._log.warning("rollout status not written", error=str(exc))
        failed_now = [r for r in results if r.outcome in _ROLLOUT_FAILURES]
        restarted = [r for r in results if r.outcome == "Restarted"]
        if failed_now:
            await self._recorder.post(
                obj, type="Warning", reason=_rollout_failure_reason(failed_now),
                message="; ".join(r.detail for r in failed_now),
            )
        if restarted:
            await self._recorder.post(
                obj, type="Normal", reason="RolloutRestartTriggered",
                message="; ".join(r.detail for r in restarted),
            )

    def _with_rollout(self, conditions: list[JSON], key: Key, generation: int) -> list[JSON]:
        """``conditions`` with RolloutRestart summing up the restarts of the latest rotation."""
        entries = self._rollout_results.get(key) or {}
        done = [r for r in entries.values() if r is not None]
        waiting = [str(w) for w, r in entries.items() if r is None]
        failed = [r for r in done if r.outcome in _ROLLOUT_FAILURES]
        status: ConditionStatus
        if failed:
            status, reason = "False", _rollout_failure_reason(failed)
            message = "; ".join(r.detail for r in failed)
        elif waiting:
            status, reason = "Unknown", "Pending"
            message = "; ".join([*(r.detail for r in done), f"restarting {', '.join(waiting)}"])
        else:
            status, reason = "True", "RolloutRestartTriggered"
            message = "; ".join(r.detail for r in done)
        return set_condition(conditions, type=ROLLOUT_RESTART, status=status, reason=reason,
                             message=message, generation=generation)

    async def _fail(
        self, obj: JSON, *, reason: str, message: str, ready_only: bool = False
    ) -> None:
        generation = int(obj["metadata"].get("generation") or 0)

        def failed(current: JSON) -> JSON:
            conditions = list(current.get("conditions") or [])
            for kind in (READY,) if ready_only else (SYNCED, READY):
                conditions = set_condition(
                    conditions, type=kind, status="False", reason=reason, message=message,
                    generation=generation,
                )
            return {"conditions": conditions, "observedGeneration": generation}

        try:
            await self._status.update(obj, failed)
        except KubeError as exc:
            self._log.warning("status not written", error=str(exc))
        else:
            self._failure_written[key_of(obj)] = (reason, asyncio.get_running_loop().time())
        await self._recorder.post(obj, type="Warning", reason=reason, message=message)

    def _fails_again(self, obj: JSON, *, reason: str) -> bool:
        """Whether the status already says ``reason``, written by this process less than
        REWRITE_FAILURE_AFTER seconds ago (its message may then lag by that much)."""
        written = self._failure_written.get(key_of(obj))
        return written is not None and written[0] == reason and \
            asyncio.get_running_loop().time() - written[1] < REWRITE_FAILURE_AFTER

    # --- drift --------------------------------------------------------------------------

    def _remember_destination(self, spec: VaultStaticSecret) -> None:
        key = (spec.namespace, spec.name)
        secret = (spec.namespace, spec.destination.name)
        if self._destination_of.get(key) != secret:
            self._forget_destination(key)
        self.destinations[secret] = key
        self._destination_of[key] = secret

    def _forget_destination(self, key: Key) -> None:
        # Through the reverse index: a scan of ``destinations`` on every reconcile made each
        # refresh cost O(N) (71 % of syncd's CPU at 10,000 objects).
        secret = self._destination_of.pop(key, None)
        if secret is not None and self.destinations.get(secret) == key:
            del self.destinations[secret]  # unless another VaultStaticSecret took it over

    def forget(self, key: Key) -> None:
        """The VaultStaticSecret is gone: drop what was remembered about it."""
        self._forget_destination(key)
        self._specs.drop(key)
        self._written.pop(key, None)
        self._rollout_results.pop(key, None)
        self._failure_written.pop(key, None)
        self._status.forget(key)
        if self._outages is not None:
            self._outages.release(kind=self.kind, key=key)

    def drifted(self, secret: JSON | None, owner_key: Key) -> bool:
        """Whether a managed Secret's data no longer has the owner's fingerprint."""
        owner = self._owners.get(*owner_key)
        if owner is None or owner_key in self._writing:
            return False
        expected = {(owner.get("status") or {}).get("secretMAC"), self._written.get(owner_key)}
        expected.discard(None)
        if secret is None or not expected:
            return True
        return data_mac(secret, key=self._hmac_key) not in expected


def _sync_reason(
    *, destination: str, previous_mac: str, rotated: bool, written: str, new_spec: bool
) -> tuple[str, str]:
    """The reason and message of a successful sync."""
    if not previous_mac:
        return "SecretSynced", f"synced to Secret {destination}"
    if rotated:
        return "SecretRotated", f"new data in Secret {destination}"
    if written and new_spec:
        return "SecretSynced", f"Secret {destination} updated for the new spec"
    if written:
        # Said apart, so that an edit and a deletion are two Events (identical ones are
        # posted once per ten minutes).
        how = "deleted; recreated" if written == "Created" else "changed; restored"
        return "SecretRestored", f"Secret {destination} was {how} (drift)"
    return "SecretSynced", f"synced to Secret {destination}"


_ROLLOUT_FAILURES = ("Failed", "NotFound", "Paused")


def _rollout_failure_reason(failed: list[Result]) -> str:
    if all(r.outcome == "Paused" for r in failed):
        return "DeploymentPaused"
    return "RolloutRestartFailed"


def _lookup(cache: Informer | None) -> Lookup:
    """How a parse finds the objects it refers to in ``cache`` (None: finds none)."""
    return cache.get if cache is not None else _nothing


def _nothing(namespace: str, name: str) -> None:
    return None


def _unwatched(cache: Informer, namespace: str) -> str:
    """Why a reference into ``namespace`` cannot be found, when syncd does not watch it."""
    if not cache.namespaces or namespace in cache.namespaces:
        return ""
    return (f" (namespace {namespace} is not watched by syncd: --watch-namespace"
            f" {','.join(cache.namespaces)})")


def _ready(status: JSON) -> bool:
    return any(
        c.get("type") == READY and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
