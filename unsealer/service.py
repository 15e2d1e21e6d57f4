"""``unsealer run``: watch the Vault pods, unseal each one that is sealed, until SIGTERM.

Before serving, the custody configuration is checked against the split-custody invariant from
what the custodians hold now (fingerprints only); a configuration where one custodian, or one
plus the holder of its key, could unseal Vault alone is refused.

Only pods the configured StatefulSet controls are ever spoken to (see
:mod:`unsealer.discovery`); any other pod with Vault's labels gets a Warning Event
``NotAVaultPod`` and a log line, once per pod, and no request at all. Each candidate is reached
at its IP over https, its certificate checked for the pod's stable DNS name; plain http only
with ``--allow-plain-http``, announced at start and on every attempt (log line, span attribute
``unsealer.transport``, metric label ``transport``).

Then every pod is a key of a work queue: one attempt per pod at a time, pods in parallel, and
a failed attempt (too few custodians reachable, a wrong share, Vault not answering) retried
after an exponential, jittered, capped delay — never a hot loop. Pod changes (see
:mod:`unsealer.discovery`) and a periodic seal-status poll add pods to the queue.

Observability: one trace per attempt (spans per custodian fetch and per share submitted),
Events ``Unsealed`` / ``UnsealFailed`` on the pod, and metrics: attempts by result, time from
"seen sealed" to unsealed, custodians reachable and configured, pods sealed and for how long
(also in Prometheus text format at ``/metrics`` on ``--health-address``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from opentelemetry.metrics import CallbackOptions, Observation

from plumbing.events import EventRecorder
from plumbing.health import HealthServer
from plumbing.kube import JSON, PODS, STATEFULSETS, Kube, connect
from plumbing.queueing import WorkQueue
from plumbing.telemetry import meter, tracer
from plumbing.watching import Change, Informer
from unsealer.custody import (
    CustodyConfigError,
    PeerServer,
    build_custodians,
    build_peer_server,
    check_invariant,
    load_config,
    require_invariant,
    survey,
)
from unsealer.custody.config import PeerConfig
from unsealer.custody.invariant import require_configured
from unsealer.discovery import StatefulSet, VaultPod, on_pod_change
from unsealer.notifications import Event, Notice, Notifier
from unsealer.settings import Settings
from unsealer.shares import FingerprintKey
from unsealer.unsealing import Attempt, Unsealer, UnsealFailed, VaultShape
from unsealer.vault_sys import VaultNode

COMPONENT = "vault-unsealer"
#: How long an attempt waits for the StatefulSet and pod caches before retrying later.
_CACHE_WAIT_SECONDS = 10.0


class NotACandidate(LookupError):
    """The pod is not one the unsealer may speak to (or not yet: no IP, no StatefulSet).

    ``foreign``: it wears Vault's labels but the StatefulSet does not control it.
    """

    def __init__(self, reason: str, *, foreign: bool = False) -> None:
        super().__init__(reason)
        self.foreign = foreign


class Metrics:
    """The unsealer's instruments (OpenTelemetry; exported as OTEL_METRICS_EXPORTER says)."""

    def __init__(self, *, custodians: int, sealed_since: dict[str, float]) -> None:
        instruments = meter("unsealer")
        self.attempts = instruments.create_counter(
            "unsealer.attempts", unit="{attempt}", description="unseal attempts by result"
        )
        self.time_to_unseal = instruments.create_histogram(
            "unsealer.time_to_unseal", unit="s",
            description="from the pod seen sealed to unsealed",
        )
        self.reachable = custodians
        instruments.create_observable_gauge(
            "unsealer.custodians.reachable", callbacks=[self._observe_reachable],
            unit="{custodian}", description="custodians that answered the last fetch",
        )

        instruments.create_observable_gauge(
            "unsealer.custodians.configured", callbacks=[self._observe_configured],
            unit="{custodian}", description="custodians in the custody config",
        )
        self._configured = custodians
        self._sealed_since = sealed_since
        instruments.create_observable_gauge(
            "unsealer.sealed.pods", callbacks=[self._observe_sealed], unit="{pod}",
            description="Vault pods seen sealed and not unsealed since",
        )
        instruments.create_observable_gauge(
            "unsealer.sealed.duration", callbacks=[self._observe_sealed_for], unit="s",
            description="how long the pod sealed longest has been (0 when none is)",
        )

    def _observe_reachable(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.reachable)

    def _observe_configured(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._configured)

    def _observe_sealed(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(len(self._sealed_since))

    def _observe_sealed_for(self, options: CallbackOptions) -> Iterable[Observation]:
        since = min(self._sealed_since.values(), default=None)
        yield Observation(0.0 if since is None else time.monotonic() - since)


class Service:
    """The running unsealer: one per process."""

    def __init__(
        self,
        *,
        settings: Settings,
        kube: Kube,
        session: aiohttp.ClientSession,
        unsealer: Unsealer,
        custodian_count: int,
        shape: VaultShape,
        notifier: Notifier,
    ) -> None:
        self._settings = settings
        self._notifier = notifier
        #: The failure last notified per pod: a failure is told once per reason, not per retry.
        self._told_failure: dict[str, str] = {}
        self._session = session
        self._unsealer = unsealer
        self._custodian_count = custodian_count
        self._shape = shape
        self.pods = Informer(
            kube=kube, resource=PODS, namespace=settings.namespace,
            label_selector=settings.selector, on_change=on_pod_change(self._look),
        )
        # One object, by name: RBAC grants list/watch on that name only.
        self.statefulsets = Informer(
            kube=kube, resource=STATEFULSETS, namespace=settings.namespace,
            field_selector=f"metadata.name={settings.statefulset}",
            on_change=self._statefulset_changed,
        )
        self._warned: set[str] = set()
        self.transport = "https" if settings.address_template.startswith("https://") \
            else "plain-http"
        # The first retry comes soon (0.25-0.5 s): what fails first is usually a Vault whose
        # listener is still starting (a restart measured 1-2 s longer with a 2 s base).
        self.queue: WorkQueue[str] = WorkQueue(
            worker=self._attempt, concurrency=8, backoff_base=0.5,
            backoff_cap=settings.backoff_max_seconds,
        )
        self._recorder = EventRecorder(
            kube=kube, component=COMPONENT, instance=socket.gethostname()
        )
        self._sealed_since: dict[str, float] = {}
        self.metrics = Metrics(custodians=custodian_count, sealed_since=self._sealed_since)
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else True
        )
        self._log = structlog.get_logger("unsealer")

    def ready(self) -> str | None:
        """Readiness: None once the pod and StatefulSet caches are listed, else why not."""
        for cache in (self.statefulsets, self.pods):
            if not cache.synced.is_set():
                return "caches not listed yet"
        return None

    def _look(self, pod: str, reason: str) -> None:
        if self._settings.peer_only:
            return  # the pod cache serves is_sealed; unsealing is the other unsealer's job
        self._log.info("looking at pod", pod=pod, reason=reason)
        self.queue.add(pod)

    def poll(self) -> None:
        if self._settings.peer_only:
            return
        for obj in self.pods:
            self.queue.add(obj["metadata"]["name"])

    def _statefulset_changed(self, change: Change) -> None:
        # Identity changed (new uid, size, Service): every pod deserves a new look. Status
        # updates (readyReplicas...) do not.
        before = StatefulSet.from_object(change.old) if change.old else None
        if change.type == "DELETED" or before != StatefulSet.from_object(change.object):
            self.poll()

    async def _statefulset(self) -> StatefulSet:
        for cache in (self.statefulsets, self.pods):  # a fresh peer server may be asked early
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cache.synced.wait(), _CACHE_WAIT_SECONDS)
        if not (self.statefulsets.synced.is_set() and self.pods.synced.is_set()):
            raise NotACandidate(f"StatefulSet {self._settings.statefulset!r} or its pods"
                                " not read yet")
        obj = self.statefulsets.get(self._settings.namespace, self._settings.statefulset)
        if obj is None:
            raise NotACandidate(
                f"StatefulSet {self._settings.statefulset!r} does not exist in namespace"
                f" {self._settings.namespace!r}: no pod is spoken to"
            )
        return StatefulSet.from_object(obj)

    async def _target(self, name: str) -> tuple[JSON, VaultPod, VaultNode]:
        """The pod ``name`` and a node that speaks only to the server proving its name.

        Raises :class:`NotACandidate` (with the reason) for a pod that is not one of the
        StatefulSet's, or has no IP yet.
        """
        statefulset = await self._statefulset()
        obj = self.pods.get(self._settings.namespace, name)
        if obj is None:
            raise NotACandidate(f"no Vault pod {name!r}")
        problem = statefulset.why_not_member(obj)
        if problem is not None:
            raise NotACandidate(
                f"pod {name!r} has Vault's labels but is not a pod of StatefulSet"
                f" {statefulset.name!r}: {problem}", foreign=True,
            )
        pod = VaultPod.from_object(obj)
        if not pod.ip:
            raise NotACandidate(f"pod {name!r} has no IP yet")
        node = VaultNode(
            session=self._session, address=pod.address(self._settings.address_template),
            ssl_context=self._ssl,
            server_name=pod.server_name(self._settings.server_name_template,
                                        service=statefulset.service),
        )
        return obj, pod, node

    async def is_sealed(self, name: str) -> bool:
        """For the peer server: is this pod, a verified Vault of ours, sealed right now?

        Raises when it cannot tell, when the pod is not one of the StatefulSet's, or when its
        Vault reports another threshold or share count than the custody config records.
        """
        _obj, _pod, node = await self._target(name)
        status = await node.seal_status()
        mismatch = self._shape.mismatch(name, status) if status.sealed else None
        if mismatch is not None:
            raise NotACandidate(mismatch)
        return status.sealed

    async def _attempt(self, name: str) -> float | None:
        try:
            obj, pod, node = await self._target(name)
        except NotACandidate as exc:
            self._sealed_since.pop(name, None)
            await self._refuse(name, exc)
            return None
        started = time.monotonic()
        with tracer("unsealer").start_as_current_span(
            "unseal", attributes={"k8s.namespace.name": pod.namespace, "k8s.pod.name": name,
                                  "vault.address": node.address,
                                  "vault.server_name": node.server_name or "",
                                  "unsealer.transport": self.transport,
                                  "unsealer.identity_verified": node.verified},
        ) as span:
            attempt = await self._unsealer.unseal(node, pod=name, instance=pod.uid)
            span.set_attribute("unsealer.outcome", attempt.outcome)
            span.set_attribute("unsealer.custodians", list(attempt.custodians))
        return await self._report(obj, name, attempt, started=started)

    async def _refuse(self, name: str, refusal: NotACandidate) -> None:
        """A labelled pod that is not Vault's: one log line and one Warning Event per pod."""
        obj = self.pods.get(self._settings.namespace, name)
        reason = str(refusal)
        if obj is None or not refusal.foreign:
            self._log.info("not unsealing", pod=name, reason=reason)
            return
        uid = str((obj.get("metadata") or {}).get("uid") or name)
        if uid in self._warned:
            return
        self._warned.add(uid)
        self._log.warning("not a vault pod: never spoken to", pod=name, reason=reason)
        await self._recorder.post(obj, type="Warning", reason="NotAVaultPod",
                                  message=f"{reason}; the unsealer sends it no request")

    async def _report(
        self, obj: dict[str, object], name: str, attempt: Attempt, *, started: float
    ) -> float | None:
        """Metrics, log line and Event of one attempt; raises to have a failure retried."""
        now = time.monotonic()
        if attempt.outcome in ("AlreadyUnsealed", "Uninitialized"):
            self._sealed_since.pop(name, None)
            if attempt.outcome == "Uninitialized":
                self._log.warning("vault not initialised", pod=name, detail=attempt.detail)
                await self._recorder.post(obj, type="Warning", reason="VaultUninitialized",
                                          message=attempt.detail)
            return None
        if attempt.outcome != "VaultUnreachable":
            # The pod was seen sealed when this attempt read its seal-status.
            if name not in self._sealed_since:
                self._notify("sealed", name, "Sealed", f"seen sealed at {_clock()}")
            self._sealed_since.setdefault(name, started)
            self.metrics.reachable = self._custodian_count - len(attempt.unreachable)
        self.metrics.attempts.add(1, {"result": attempt.outcome, "transport": self.transport})
        log = self._log.bind(pod=name, outcome=attempt.outcome, transport=self.transport,
                             custodians=list(attempt.custodians),
                             unreachable=list(attempt.unreachable),
                             inconsistent=list(attempt.bad_shares))
        if attempt.outcome == "Unsealed":
            since = self._sealed_since.pop(name, started)
            self.metrics.time_to_unseal.record(now - since)
            log.info("unsealed", seconds=round(now - since, 3))
            self._told_failure.pop(name, None)
            self._notify("unsealed", name, "Unsealed",
                         f"{_message(attempt)} ({now - since:.1f} s after it was seen sealed)")
            await self._recorder.post(obj, type="Normal", reason="Unsealed",
                                      message=_message(attempt))
            return None
        log.warning("unseal failed", detail=attempt.detail)
        # Unreachable is what a restarting Vault looks like; it is not news until it is sealed.
        if attempt.outcome != "VaultUnreachable" and \
                self._told_failure.get(name) != attempt.outcome:
            self._told_failure[name] = attempt.outcome
            self._notify("unseal_failed", name, attempt.outcome, _message(attempt))
        await self._recorder.post(obj, type="Warning", reason="UnsealFailed",
                                  message=_message(attempt))
        raise UnsealFailed(attempt)


    def _notify(self, event: Event, pod: str, reason: str, message: str) -> None:
        self._notifier.notify(Notice(event=event, namespace=self._settings.namespace, pod=pod,
                                     reason=reason, message=message))


def _clock() -> str:
    return time.strftime("%H:%M:%S", time.gmtime()) + " UTC"


def _message(attempt: Attempt) -> str:
    parts = [attempt.detail]
    if attempt.unreachable:
        parts.append(f"unreachable custodians: {', '.join(attempt.unreachable)}")
    if attempt.bad_shares:
        parts.append(f"inconsistent shares: {', '.join(attempt.bad_shares)}")
    return "; ".join(parts)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Check custody, then watch and unseal until ``stop`` is set.

    Raises :class:`~unsealer.custody.CustodyConfigError` or
    :class:`~unsealer.custody.InvariantError` before serving when custody is unsafe.
    """
    log = structlog.get_logger("unsealer")
    # A share file that is missing is a custodian that is down (a disk not mounted yet after
    # a power cut): the others may suffice. One that is readable by others is refused.
    config = await asyncio.to_thread(
        load_config, Path(settings.custody_config), vault_namespace=settings.namespace,
        require_files=False,
    )
    if config.threshold is None:
        raise CustodyConfigError(
            f"custody config {config.source}: 'threshold' is required by unsealer run, to"
            " check that no custodian alone reaches it"
        )
    # Refused by place from the config alone, before any connection or log line (exit 2).
    require_configured(config, allow_unsafe=settings.allow_unsafe_custody)
    kube = await connect(kubeconfig=settings.kubeconfig)
    session = aiohttp.ClientSession()
    tasks: list[asyncio.Task[None]] = []
    scheduler = AsyncIOScheduler()
    peer: PeerServer | None = None
    service: Service | None = None
    probes: HealthServer | None = None
    notifier: Notifier | None = None
    try:
        custodians = build_custodians(config, kube=kube)
        key = (FingerprintKey(settings.fingerprint_key) if settings.fingerprint_key
               else FingerprintKey.generate())
        holdings, unverified = await survey(config, custodians=custodians, fingerprint_key=key)
        report = check_invariant(holdings, threshold=config.threshold, unverified=unverified)
        require_invariant(report, allow_unsafe=settings.allow_unsafe_custody)
        shape = VaultShape(threshold=config.threshold, shares=config.shares)
        unsealer = Unsealer(custodians=custodians, fingerprint_key=key, shape=shape,
                            max_retry_subsets=settings.max_retry_subsets,
                            share_attempt_budget=settings.share_attempt_budget,
                            share_budget_seconds=settings.share_budget_seconds,
                            remote={spec.name: spec.shares for spec in config.share_custodians
                                    if isinstance(spec, PeerConfig)})
        notifier = Notifier(targets=settings.notify, session=session)
        service = Service(settings=settings, kube=kube, session=session, unsealer=unsealer,
                          custodian_count=len(custodians), shape=shape, notifier=notifier)
        if service.transport == "plain-http":
            log.warning(
                "plain http: Vault's identity is not verified", transport=service.transport,
                detail="--allow-plain-http: any server at a pod's IP can read the shares sent"
                " to it; at most the threshold per attempt, no odd-share search. Turn TLS on"
                " in Vault (README: unsealer, TLS)",
            )
        peer = build_peer_server(config, custodians=custodians, is_sealed=service.is_sealed,
                                 fingerprint_key=key)
        if peer is None and settings.peer_only:
            raise CustodyConfigError(
                f"custody config {config.source}: --peer-only needs a 'peerServer' to serve"
            )
        if peer is not None:
            await peer.start()
        tasks.append(asyncio.create_task(service.statefulsets.run(), name="statefulset"))
        tasks.append(asyncio.create_task(service.pods.run(), name="pods"))
        tasks.append(asyncio.create_task(service.queue.run(), name="queue"))
        tasks.append(asyncio.create_task(notifier.run(), name="notifications"))
        if settings.health_address:
            probes = HealthServer(address=settings.health_address,
                                  alive=lambda: _dead(tasks), ready=service.ready)
            await probes.start()
        scheduler.add_job(
            _poll, IntervalTrigger(seconds=settings.poll_seconds,
                                   jitter=min(settings.poll_seconds * 0.1, 5.0)),
            args=[service], id="seal-status-poll", coalesce=True, max_instances=1,
        )
        scheduler.start()
        log.info("ready", namespace=settings.namespace, selector=settings.selector,
                 statefulset=settings.statefulset, transport=service.transport,
                 custodians=sorted(custodians), threshold=config.threshold,
                 mode="peer only" if settings.peer_only else "unseal")
        await stop.wait()
        log.info("stopping")
    finally:
        if probes is not None:
            await probes.stop()
        if service is not None:
            await service.queue.close(grace=settings.grace_seconds)
        if notifier is not None:  # what the last attempts told, if the targets answer soon
            await notifier.drain(grace=min(settings.grace_seconds, 5.0))
        if scheduler.running:
            scheduler.shutdown(wait=False)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if peer is not None:
            with contextlib.suppress(Exception):
                await peer.close()
        await session.close()
        await kube.close()
        if service is not None:  # a refusal before serving is one line, not a log (cli.py)
            log.info("stopped")


def _dead(tasks: list[asyncio.Task[None]]) -> str | None:
    """Liveness: why the unsealer cannot work any more (a cache or the queue ended), or None."""
    for task in tasks:
        if task.done():
            return f"{task.get_name()} stopped"
    return None


async def _poll(service: Service) -> None:
    service.poll()


