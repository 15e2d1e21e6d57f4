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

from dataclasses import dataclass

import structlog

from plumbing.events import EventRecorder
from plumbing.kube import JSON, Kube, KubeError
from plumbing.telemetry import tracer
from plumbing.vault import VaultPool
from plumbing.watching import Informer
from syncd import sources
from syncd.auth_globals import GlobalError, merge_auth_global
from syncd.destinations import Desired, DestinationError, decode_data, in_sync, write
from syncd.fingerprint import fingerprint
from syncd.rendering import RenderError, Templates, render
from syncd.rollout import Result, Rollouts, Workload
from syncd.specs import (
    AutoTarget,
    NamedTarget,
    ObjectRef,
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
    ) -> None:
        self._caches = caches
        self._templates = templates
        self._clients = clients
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
        self._log = structlog.get_logger("syncd")

    # --- the reconcile ------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        obj = self._caches.static_secrets.get(*key)
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
        generation = int(obj["metadata"].get("generation") or 0)
        try:
            spec = parse_vault_static_secret(self._with_transformations(obj))
        except TransformationError as exc:
            await self._fail(obj, reason=exc.reason, message=str(exc), ready_only=True)
            log.warning("transformationRefs not resolved", reason=exc.reason, error=str(exc))
            return exc.reason
        except SpecError as exc:
            await self._fail(obj, reason="InvalidSpec", message=str(exc), ready_only=True)
            log.warning("invalid spec", error=str(exc))
            return "InvalidSpec"
        self._remember_destination(spec)
        if spec.warnings and (obj.get("status") or {}).get("observedGeneration") != generation:
            # Valid but without effect (labels with create: false...): say so once per spec.
            await self._recorder.post(
                obj, type="Warning", reason="IneffectiveSettings",
                message="; ".join(spec.warnings),
            )
        try:
            auth, connection = self._resolve(spec)
            client = await self._clients.get(namespace=namespace, auth=auth, connection=connection)
        except (NotReady, AuthError) as exc:
            reason = getattr(exc, "reason", "VaultAuthFailed")
            await self._fail(obj, reason=reason, message=str(exc))
            log.warning("not ready", reason=reason, error=str(exc))
            raise

        with tracer("syncd").start_as_current_span(
            "vault.read", attributes={"vault.mount": spec.mount, "vault.path": spec.path,
                                      "vault.kv_type": spec.kv_type}
        ) as span:
            try:
                source = await sources.read(
                    self._pool, client, kv_type=spec.kv_type, mount=spec.mount,
                    path=spec.path, version=spec.version,
                    namespace=spec.vault_namespace or auth.vault_namespace,
                )
            except sources.SourceError as exc:
                span.set_attribute("syncd.error.reason", exc.reason)
                if isinstance(exc, sources.SourceForbidden):
                    self._clients.forget(namespace=namespace, auth=auth,
                                         connection=connection, client=client)
                await self._fail(obj, reason=exc.reason, message=str(exc))
                log.warning("vault read failed", reason=exc.reason, error=str(exc))
                if exc.retry:
                    raise
                return exc.reason
            if source.version is not None:
                span.set_attribute("vault.kv.version", source.version)

        destination = spec.destination
        current = self._caches.secrets.get(namespace, destination.name)
        secret_type = destination.type
        if not destination.create and current is not None:
            secret_type = current.get("type") or secret_type
        try:
            rendered = await render(
                kv_type=spec.kv_type, data=source.raw, templates=self._templates,
                transformation=destination.transformation, labels=spec.labels,
                annotations=spec.annotations, secret_type=secret_type, tenant=namespace,
            )
        except RenderError as exc:
            await self._fail(obj, reason=exc.reason, message=str(exc))
            log.warning("render failed", reason=exc.reason, error=str(exc))
            if exc.retry:  # over budget: back off, and let the others have the workers
                raise
            return exc.reason

        mac = fingerprint(key=self._hmac_key, data=rendered)
        status = self._status.current(obj)  # the cache may not show our last write yet
        previous_mac = status.get("secretMAC") or ""
        desired = Desired(
            namespace=namespace, name=destination.name, type=secret_type,
            create=destination.create, overwrite=destination.overwrite, owner=obj,
            data=rendered, labels=destination.labels, annotations=destination.annotations,
            owner_reference=spec.deletion_policy == "Delete",
        )
        unchanged = previous_mac == mac and status.get("observedGeneration") == generation
        # A Secret we do not own is not cached: trust the fingerprint for it.
        needs_write = not in_sync(desired, current) if destination.create else not unchanged
        if unchanged and not needs_write and _ready(status):
            log.debug("unchanged", version=source.version)
            return "Unchanged"

        written = ""
        if needs_write:
            with tracer("syncd").start_as_current_span(
                "secret.write", attributes={"k8s.secret.name": destination.name}
            ) as span:
                try:
                    self._written[(namespace, name)] = mac
                    self._writing.add((namespace, name))
                    written = await write(self._kube, desired, current=current)
                except DestinationError as exc:
                    await self._fail(obj, reason=exc.reason, message=str(exc))
                    log.warning("destination refused", error=str(exc))
                    return exc.reason
                finally:
                    self._writing.discard((namespace, name))
                span.set_attribute("syncd.write", written)

        rotated = bool(previous_mac) and previous_mac != mac
        restarting = False
        if rotated and spec.rollout_restart_targets and spec.hmac_secret_data:
            workloads = await self._targets(spec)
            if workloads:
                self._rollout_results[(namespace, name)] = dict.fromkeys(workloads)
                self.rollouts.request(
                    workloads=workloads, secret=destination.name, fingerprint=mac, owner=obj
                )
                restarting = True
        if not previous_mac:
            reason, message = "SecretSynced", f"synced to Secret {destination.name}"
        elif rotated:
            reason, message = "SecretRotated", f"new data in Secret {destination.name}"
        elif written and status.get("observedGeneration") != generation:
            reason, message = "SecretSynced", f"Secret {destination.name} updated for the new spec"
        elif written:
            # Said apart, so that an edit and a deletion are two Events (identical ones are
            # posted once per ten minutes).
            how = "deleted; recreated" if written == "Created" else "changed; restored"
            reason, message = "SecretRestored", f"Secret {destination.name} was {how} (drift)"
        else:
            reason, message = "SecretSynced", f"synced to Secret {destination.name}"
        version_note = f" (version {source.version})" if source.version else ""

        def synced(current: JSON) -> JSON:
            conditions = list(current.get("conditions") or [])
            if restarting:
                conditions = self._with_rollout(conditions, (namespace, name), generation)
            for kind in (SYNCED, READY):
                conditions = set_condition(
                    conditions, type=kind, status="True", reason=reason,
                    message=message + version_note, generation=generation,
                )
            return {
                "conditions": conditions,
                "observedGeneration": generation,
                "lastGeneration": generation,
                "sourceVersion": source.version,
                "secretMAC": mac if spec.hmac_secret_data else None,
                "lastSyncTime": now(),
            }

        await self._status.update(obj, synced)
        if written or rotated or not previous_mac:
            await self._recorder.post(obj, type="Normal", reason=reason, message=message)
        log.info(
            "synced", outcome=reason, written=written or "no", version=source.version,
            data_key_names=sorted(rendered),
        )
        return reason

    # --- parts --------------------------------------------------------------------------

    def _resolve(self, spec: VaultStaticSecret) -> tuple[VaultAuth, VaultConnection]:
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
            auth = parse_vault_auth(self._with_global(auth_obj))
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
            connection = parse_vault_connection(connection_obj)
        except SpecError as exc:
            raise NotReady(f"VaultConnection: {exc}", reason="VaultConnectionInvalid") from None
        return auth, connection

    def _with_global(self, auth_obj: JSON) -> JSON:
        """The VaultAuth with its VaultAuthGlobal merged in (:mod:`syncd.auth_globals`)."""
        cache = self._caches.auth_globals
        return merge_auth_global(
            auth_obj, lookup=lambda ns, name: cache.get(ns, name) if cache else None,
            operator_namespace=self._operator_namespace)

    def _with_transformations(self, obj: JSON) -> JSON:
        """The VaultStaticSecret with its transformationRefs folded in
        (:mod:`syncd.transformations`), so that they render as inline templates do."""
        cache = self._caches.transformations
        return resolve_transformation_refs(
            obj, lookup=lambda ns, name: cache.get(ns, name) if cache else None,
            operator_namespace=self._operator_namespace)

    async def _targets(self, spec: VaultStaticSecret) -> list[Workload]:
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
        obj = self._caches.static_secrets.get(*key) or owner
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
        await self._recorder.post(obj, type="Warning", reason=reason, message=message)

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
        self._written.pop(key, None)
        self._rollout_results.pop(key, None)
        self._status.forget(key)

    def drifted(self, secret: JSON | None, owner_key: Key) -> bool:
        """Whether a managed Secret's data no longer has the owner's fingerprint."""
        owner = self._caches.static_secrets.get(*owner_key)
        if owner is None or owner_key in self._writing:
            return False
        expected = {(owner.get("status") or {}).get("secretMAC"), self._written.get(owner_key)}
        expected.discard(None)
        if secret is None or not expected:
            return True
        return fingerprint(key=self._hmac_key, data=decode_data(secret)) not in expected


_ROLLOUT_FAILURES = ("Failed", "NotFound", "Paused")


def _rollout_failure_reason(failed: list[Result]) -> str:
    if all(r.outcome == "Paused" for r in failed):
        return "DeploymentPaused"
    return "RolloutRestartFailed"


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
