"""Kinds whose objects hold something outside Kubernetes (a lease, a certificate), and the
finalizer that keeps such an object until syncd has undone it.

The finalizer is added only while there is something to undo (``revoke: true``...), so that an
object is never stuck for nothing when syncd is not running. :class:`Finalizing` is the shell
of their reconcile — the span, deletion, the finalizer — around the kind's own
:meth:`~Finalizing.sync` and :meth:`~Finalizing.undo`, which are built from the steps of
:class:`syncd.controller.Controller`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hvac
from structlog.typing import FilteringBoundLogger as BoundLogger

from plumbing.kube import JSON, JSON_PATCH, Kube, KubeError, Resource
from plumbing.telemetry import tracer
from syncd import leases
from syncd.controller import Controller, Key, Outcome, Parked
from syncd.sources import SourceError
from syncd.specs import SpecError, VaultConnection


async def keep_finalizer(
    kube: Kube, obj: JSON, *, resource: Resource, finalizer: str, wanted: bool
) -> None:
    """Make ``finalizer`` present on ``obj`` or not, as ``wanted``; nothing if it already is."""
    metadata = obj["metadata"]
    finalizers = list(metadata.get("finalizers") or [])
    if (finalizer in finalizers) == wanted:
        return
    changed = [*finalizers, finalizer] if wanted else [f for f in finalizers if f != finalizer]
    # The test keeps a concurrent change of the list (another controller's) from being lost.
    patch = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers}
             if "finalizers" in metadata else
             {"op": "add", "path": "/metadata/finalizers", "value": []},
             {"op": "replace", "path": "/metadata/finalizers", "value": changed}]
    try:
        await kube.request(
            "PATCH", resource.path(namespace=metadata["namespace"], name=metadata["name"]),
            body=patch, content_type=JSON_PATCH, query=[("fieldManager", "vault-syncd")])
    except KubeError as exc:
        if exc.status == 404 and not wanted:
            return  # gone already
        raise


#: When a reconcile that ended on a reported failure (not retried with backoff) looks again.
RETRY_AFTER_SECONDS = 60.0


class Finalizing(Controller):
    """A controller whose objects may carry :attr:`finalizer`."""

    resource: Resource
    finalizer: str
    #: The span attribute naming the object, e.g. ``syncd.vds.name``.
    span_name: str

    async def reconcile(self, key: Key) -> float | None:
        obj = self._owners.get(*key)
        if obj is None:
            self.forget(key)
            return None
        namespace, name = key
        with tracer("syncd").start_as_current_span(
            "reconcile", attributes={"k8s.namespace.name": namespace, self.span_name: name}
        ) as span:
            log = self._log.bind(namespace=namespace, name=name, kind=self.resource.kind)
            again: float | None = None
            try:
                if obj["metadata"].get("deletionTimestamp"):
                    outcome = await self._finalize(obj, log=log)
                else:
                    outcome, again = await self.sync(obj, log=log)
            except Parked as exc:
                outcome = exc.reason  # its connection's probe puts it back in the queue
            except Outcome as exc:
                # Reported already; what was wrong may be fixed outside the object (a
                # destination Secret created, a Vault role changed): look again later.
                outcome, again = exc.reason, RETRY_AFTER_SECONDS
            span.set_attribute("syncd.outcome", outcome)
        return again

    async def sync(self, obj: JSON, *, log: BoundLogger) -> tuple[str, float | None]:
        """Reconcile ``obj``: the outcome, and in how many seconds to look again (None: at
        the next change)."""
        raise NotImplementedError

    def parse(self, obj: JSON) -> Any:
        """The spec of ``obj`` (raises :class:`SpecError`)."""
        raise NotImplementedError

    async def undo(self, obj: JSON, *, spec: Any, log: BoundLogger) -> str | None:
        """Undo what ``obj`` holds outside Kubernetes; the outcome, or None if nothing was."""
        raise NotImplementedError

    async def _finalize(self, obj: JSON, *, log: BoundLogger) -> str:
        """Deleted: undo, then let the object go. A failure to undo raises (retried with
        backoff, the object kept); remove the finalizer by hand to give up."""
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        outcome: str | None = None
        if self.finalizer in (obj["metadata"].get("finalizers") or []):
            try:
                spec = self.parse(obj)
            except SpecError as exc:
                log.warning("deleted with an invalid spec: nothing undone", error=str(exc))
            else:
                outcome = await self.undo(obj, spec=spec, log=log)
            await self._keep_finalizer(obj, wanted=False)
        self.forget(key)
        return outcome or "Deleted"

    async def _issue(
        self, obj: JSON, *, client: hvac.Client, connection: VaultConnection, span: str,
        method: str, mount: str, path: str, params: Mapping[str, Any],
        vault_namespace: str | None, why: str, log: BoundLogger,
    ) -> leases.Issued:
        """Ask Vault for new credentials or a certificate; a refusal is reported (and
        retried with backoff when it may pass; parked when Vault is away)."""
        with tracer("syncd").start_as_current_span(
            span, attributes={"vault.mount": mount, "vault.path": path, "syncd.why": why}
        ) as current:
            try:
                issued = await leases.issue(
                    self._pool, client, method=method, mount=mount, path=path,
                    params=params, namespace=vault_namespace)
            except SourceError as exc:
                current.set_attribute("syncd.result", exc.reason)
                await self._park_if_outage(obj, reason=exc.reason, connection=connection,
                                           log=log)
                await self._fail(obj, reason=exc.reason, message=str(exc))
                log.warning("vault request failed", reason=exc.reason, error=str(exc))
                if exc.retry:
                    raise
                raise Outcome(exc.reason) from None
            current.set_attribute("syncd.result", "ok")
        return issued

    async def _keep_finalizer(self, obj: JSON, *, wanted: bool) -> None:
        await keep_finalizer(self._kube, obj, resource=self.resource, finalizer=self.finalizer,
                             wanted=wanted)
