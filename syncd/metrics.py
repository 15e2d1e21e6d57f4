"""syncd's metrics (OpenTelemetry), created at start-up by :func:`syncd.operator.run`.

=============================  =========  =======================================================
name                           kind       attributes
=============================  =========  =======================================================
``syncd.syncs``                counter    ``outcome``: SecretSynced, SecretRotated, SecretRestored,
                                          Unchanged, or the failure reason (VaultSealed,
                                          SourceDeleted, VaultAuthNotFound, InvalidSpec, ...)
``syncd.reconcile.duration``   histogram  ``outcome`` (seconds)
``syncd.rollout.restarts``     counter    ``result``: Restarted, Unchanged, Paused, NotFound,
                                          Failed; ``kind`` (VSO #1129)
``syncd.vault.reads``          counter    ``result``: ok, or the failure reason
``syncd.vault.leases``         counter    ``operation``: issue, renew, revoke (VaultDynamicSecret),
                                          certificate.issue, certificate.revoke
                                          (VaultPKISecret); ``result``: ok, LeaseNotRenewable,
                                          or the failure reason
``syncd.queue.depth``          gauge      ``state``: waiting, running
``syncd.leader``               gauge      1 on the replica that holds the Lease, else 0
``syncd.vault.parked_objects`` gauge      objects waiting for their VaultConnection to answer
                                          again (:mod:`syncd.outages`), by
                                          ``vault_connection_namespace`` and
                                          ``vault_connection_name``; only connections that are
                                          down (one series per broken VaultConnection: as many
                                          as there are tenants at most, never per object)
=============================  =========  =======================================================

At ``/metrics`` on the health port (:mod:`plumbing.health`) they have Prometheus names:
``syncd_syncs_total``, ``syncd_reconcile_duration_seconds``, ``syncd_rollout_restarts_total``,
``syncd_vault_reads_total``, ``syncd_vault_leases_total``, ``syncd_queue_depth``,
``syncd_leader``, ``syncd_vault_parked_objects``; the alerts and the
dashboard of manifests/components/prometheus use them (tests/deploy keeps them in step).

**Where the numbers come from.** A reconcile, a Vault read and a rollout restart are each a
span already (see :mod:`syncd.controller`, :mod:`syncd.rollout`), and the span carries the
outcome. Rather than thread a metrics object through the controller, :class:`SpanMetrics` — a
span processor — counts those spans as they end, so a metric and its trace cannot disagree and
the controller stays free of metrics code. A reconcile that *raises* (the queue retries it
with backoff) ends its span without an outcome; the worker wrapper of :func:`counted` counts
it, by the exception's ``reason``.

Each running ``run`` sets :data:`_CURRENT` to its own :class:`Metrics`; every task it starts
inherits that context, so with two syncd instances in one process (the tests) each counts only
its own spans.

**Counting is a dict increment.** The counters are observable ones: a span adds one to a plain
per-attributes tally (:class:`Tally`) and the SDK reads the totals only when a reader collects
(a scrape, an export). A synchronous ``Counter.add`` builds a measurement, looks up its
attribute set under a lock and aggregates, per reader, on every span: about 5 µs each, two
per unchanged refresh. The exposition is the same (a monotonic cumulative sum:
``syncd_syncs_total``). The duration histogram stays synchronous: there is no observable
histogram.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode

from plumbing.queueing import Worker
from plumbing.telemetry import meter

_CURRENT: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar(
    "syncd_metrics", default=None
)
_REGISTERED: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


class Metrics:
    """The instruments of one syncd instance (create it in ``run``, not at import)."""

    def __init__(
        self, *, queue_depth: Callable[[], tuple[int, int]], leader: Callable[[], bool],
        parked: Callable[[], Mapping[tuple[str, str], int]] = dict,
    ) -> None:
        m = meter("syncd")
        tallies = _tallies()
        self.syncs, self.restarts = tallies.syncs, tallies.restarts
        self.vault_reads, self.leases = tallies.vault_reads, tallies.leases
        self.duration = m.create_histogram(
            "syncd.reconcile.duration", unit="s", description="time one reconcile took",
        )
        self._queue_depth = queue_depth
        self._leader = leader
        m.create_observable_gauge(
            "syncd.queue.depth", callbacks=[self._observe_queue], unit="{object}",
            description="VaultStaticSecrets waiting in the work queue, and being reconciled",
        )
        m.create_observable_gauge(
            "syncd.leader", callbacks=[self._observe_leader],
            description="1 when this replica holds the leader Lease",
        )
        self._parked = parked
        m.create_observable_gauge(
            "syncd.vault.parked_objects", callbacks=[self._observe_parked], unit="{object}",
            description="objects waiting for their VaultConnection to answer again, by "
            "VaultConnection (only those that are down)",
        )

    def _observe_queue(self, options: CallbackOptions) -> Iterable[Observation]:
        waiting, running = self._queue_depth()
        return [Observation(waiting, {"state": "waiting"}),
                Observation(running, {"state": "running"})]

    def _observe_leader(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1 if self._leader() else 0)]

    def _observe_parked(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, {"vault_connection_namespace": namespace,
                                    "vault_connection_name": name})
                for (namespace, name), count in sorted(self._parked().items())]

    def activate(self) -> contextvars.Token[Metrics | None]:
        """Count this instance's spans from now on, in this task and the tasks it starts."""
        _install_processor()
        return _CURRENT.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[Metrics | None]) -> None:
        _CURRENT.reset(token)


def counted(metrics: Metrics, worker: Worker[Any]) -> Worker[Any]:
    """``worker`` (the reconcile) timed, and counted when it raises."""

    async def timed(key: Any) -> float | None:
        started = time.monotonic()
        try:
            return await worker(key)
        except Exception as exc:
            reason = str(getattr(exc, "reason", "") or type(exc).__name__)
            metrics.syncs.add(("outcome", reason))
            metrics.duration.record(time.monotonic() - started, {"outcome": reason})
            raise

    return timed


class Tally:
    """How many times each attribute set was counted; read by an observable counter."""

    def __init__(self) -> None:
        self._counts: dict[tuple[tuple[str, str], ...], int] = {}

    def add(self, *attributes: tuple[str, str]) -> None:
        """Count one, with these (name, value) attributes."""
        self._counts[attributes] = self._counts.get(attributes, 0) + 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # A copy (atomic under the GIL): a periodic exporter collects from its own thread.
        return [Observation(total, dict(attributes))
                for attributes, total in self._counts.copy().items()]


class _Tallies:
    """The counters of one meter provider, shared by every :class:`Metrics` created on it (an
    observable instrument registered twice under one name keeps the first one's callback)."""

    def __init__(self, m: otel_metrics.Meter) -> None:
        self.syncs, self.restarts, self.vault_reads, self.leases = (
            Tally(), Tally(), Tally(), Tally())
        m.create_observable_counter(
            "syncd.syncs", callbacks=[self.syncs.observe], unit="{sync}",
            description="reconciles of a VaultStaticSecret, by outcome (the Synced "
            "condition's reason)")
        m.create_observable_counter(
            "syncd.rollout.restarts", callbacks=[self.restarts.observe], unit="{restart}",
            description="rollout restarts of workloads, by result")
        m.create_observable_counter(
            "syncd.vault.reads", callbacks=[self.vault_reads.observe], unit="{request}",
            description="Vault KV reads, by result")
        m.create_observable_counter(
            "syncd.vault.leases", callbacks=[self.leases.observe], unit="{request}",
            description="credentials and certificates issued, leases renewed, leases and "
            "certificates revoked, by result")


_TALLIES: weakref.WeakKeyDictionary[otel_metrics.MeterProvider, _Tallies] = (
    weakref.WeakKeyDictionary())


def _tallies() -> _Tallies:
    """The counters of the current meter provider (made with its first :class:`Metrics`)."""
    provider = otel_metrics.get_meter_provider()
    found = _TALLIES.get(provider)
    if found is None:
        found = _TALLIES[provider] = _Tallies(meter("syncd"))
    return found


class SpanMetrics(SpanProcessor):
    """Counts the reconcile, vault.read, lease and rollout.restart spans of the current
    instance."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return

    def on_end(self, span: ReadableSpan) -> None:
        metrics = _CURRENT.get()
        if metrics is None:
            return
        attributes = span.attributes or {}
        if span.name == "reconcile":
            outcome = attributes.get("syncd.outcome")
            if outcome is None:  # it raised: counted by the worker wrapper, with its reason
                return
            metrics.syncs.add(("outcome", str(outcome)))
            if span.start_time is not None and span.end_time is not None:
                seconds = (span.end_time - span.start_time) / 1e9
                metrics.duration.record(seconds, {"outcome": str(outcome)})
        elif span.name == "vault.read":
            failed = span.status.status_code is StatusCode.ERROR
            result = attributes.get("syncd.error.reason") or ("error" if failed else "ok")
            metrics.vault_reads.add(("result", str(result)))
        elif span.name in _LEASE_SPANS:
            metrics.leases.add(("operation", _LEASE_SPANS[span.name]),
                               ("result", str(attributes.get("syncd.result", "error"))))
        elif span.name == "rollout.restart":
            metrics.restarts.add(
                ("result", str(attributes.get("syncd.rollout.outcome", "Failed"))),
                ("kind", str(attributes.get("k8s.workload.kind", ""))))

    def shutdown(self) -> None:
        return

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_LEASE_SPANS = {"vault.issue": "issue", "vault.lease.renew": "renew",
                "vault.lease.revoke": "revoke", "vault.certificate.issue": "certificate.issue",
                "vault.certificate.revoke": "certificate.revoke"}


def _install_processor() -> None:
    """Add :class:`SpanMetrics` to the current tracer provider, once per provider.

    Without the SDK's provider (telemetry not configured) there are no spans to count.
    """
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and provider not in _REGISTERED:
        provider.add_span_processor(SpanMetrics())
        _REGISTERED.add(provider)
