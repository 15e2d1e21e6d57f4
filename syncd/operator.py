"""Wiring: caches, leader election, the work queue, the refresh schedule, rollouts, probes and
metrics — and a clean stop.

Start-up order matters: every cache is listed before the first reconcile, so a reconcile never
mistakes "not in the cache yet" for "does not exist" (which would, for example, try to create a
Secret that is there). With leader election on (the default, as in VSO), every replica keeps
its caches warm but only the holder of the Lease (:mod:`syncd.leadership`) runs the work
queue, the refreshes and the rollouts: a standby makes no write at all, and takes over with
caches already listed. Shutdown runs in the reverse order, on SIGTERM:

1. the queue stops handing out work; reconciles in flight get ``grace`` seconds to finish;
2. pending (debounced) rollout restarts are run now rather than lost (the fingerprint
   annotation keeps a replayed restart from restarting a workload twice);
3. the Lease is released, so the standby takes over at once;
4. the probes, the scheduler, the watches and the clients are stopped and closed.

Losing the Lease (no renewal within the renew deadline) takes the same path without step 3,
with the grace cut to what is left of the lease (duration - renew deadline - retry period, 3 s
by default: after that another replica may lead). Then :func:`run` raises
:class:`~syncd.leadership.LeadershipLost`: the process exits non-zero and Kubernetes restarts
it as a fresh standby, as controller-runtime does. Stepping back to standby in-process would
have to reset what the controller remembers of its own writes.

Every background task is created here, owned here, and cancelled and awaited here. So are the
metric instruments (:mod:`syncd.metrics`) and the probe server (:mod:`syncd.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import structlog

from plumbing.events import EventRecorder
from plumbing.kube import SECRETS, Kube, KubeError, connect
from plumbing.queueing import WorkQueue
from plumbing.vault import VaultPool
from plumbing.watching import Change, Informer, key_of
from syncd.auth_globals import VAULT_AUTH_GLOBAL
from syncd.caching import slim, slim_secret
from syncd.changes import Changes
from syncd.controller import Caches, Controller, Key
from syncd.destinations import MANAGED_SELECTOR
from syncd.dynamic import DynamicSecrets
from syncd.dynamic_specs import VAULT_DYNAMIC_SECRET
from syncd.health import HealthServer
from syncd.hmac_key import load_or_create
from syncd.instant import InstantSettings, make_source
from syncd.leadership import LeaderElector, LeadershipLost, LeaseSettings
from syncd.metrics import Metrics, counted
from syncd.outages import Outages
from syncd.pki import PKISecrets
from syncd.pki_specs import VAULT_PKI_SECRET
from syncd.refreshing import Refreshes
from syncd.rollout import Rollouts
from syncd.specs import (
    VAULT_AUTH,
    VAULT_CONNECTION,
    VAULT_STATIC_SECRET,
)
from syncd.status import StatusWriter
from syncd.template_pool import MIB, TemplatePool
from syncd.transformations import SECRET_TRANSFORMATION
from syncd.vault_addresses import AddressPattern, AllowedAddresses
from syncd.vault_clients import VaultClients, api_server_audiences
from syncd.vault_health import HealthProbe

COMPONENT = "vault-syncd"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What ``syncd run`` was told; see ``syncd run --help``."""

    kubeconfig: str | None = None
    namespace: str = "vault-syncd"
    #: Namespaces whose VaultStaticSecrets are synced; empty: all. syncd then reads and writes
    #: only there and in :attr:`namespace` (its VaultAuths and VaultConnections too), so Roles
    #: in those namespaces are all the rights it needs (manifests/syncd/namespaced/).
    watch_namespaces: tuple[str, ...] = ()
    concurrency: int = 4
    vault_threads: int = 4
    debounce_seconds: float = 2.0
    grace_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    default_refresh_seconds: float = 60.0
    #: Leader election: only the Lease holder works; see :mod:`syncd.leadership`.
    leader_elect: bool = True
    #: Where the Lease lives (default: :attr:`namespace`).
    leader_election_namespace: str | None = None
    #: This replica's name in the Lease (default: host name plus a random suffix).
    identity: str | None = None
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    #: ``host:port`` of /healthz and /readyz; empty: no probe server (``syncd run`` defaults to
    #: ``0.0.0.0:8080``; the library default stays off so embedding needs no port).
    health_address: str = ""
    #: The Vault addresses VaultConnections may use (exact URLs or globs, see
    #: :mod:`syncd.vault_addresses`); None: those of the VaultConnections in :attr:`namespace`.
    allowed_vault_addresses: tuple[str, ...] | None = None
    #: Templates: how long one VaultStaticSecret's may take, how much memory (bytes of address
    #: space beyond an idle worker's) they may use, and how many render at once; see
    #: :mod:`syncd.template_pool`.
    template_deadline_seconds: float = 1.0
    template_memory_bytes: int = 24 * MIB
    template_workers: int = 2
    #: Instant updates (``syncConfig.instantUpdates``): where change notices come from, and the
    #: refresh interval of an object while its source is connected; see :mod:`syncd.changes`.
    instant_updates: InstantSettings = field(default_factory=InstantSettings)

    def lease(self) -> LeaseSettings:
        return LeaseSettings(
            namespace=self.leader_election_namespace or self.namespace,
            identity=self.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            lease_duration=self.lease_duration_seconds,
            renew_deadline=self.renew_deadline_seconds,
            retry_period=self.retry_period_seconds,
        )




async def run(
    settings: Settings, stop: asyncio.Event, *, health: list[HealthServer] | None = None
) -> None:
    """Run the controller until ``stop`` is set; raise :class:`LeadershipLost` if it was lost.

    ``health``, when given, receives the started probe server (tests read its bound port).
    """
    log = structlog.get_logger("syncd")
    kube = await connect(kubeconfig=settings.kubeconfig)
    pool = VaultPool(max_workers=settings.vault_threads)
    tasks: list[asyncio.Task[None]] = []
    queue: WorkQueue[Key] | None = None
    #: VaultDynamicSecrets and VaultPKISecrets: each kind its own controller and queue (their
    #: keys are not VaultStaticSecrets').
    kinds: list[Kind] = []
    rollouts: Rollouts | None = None
    refreshes: Refreshes | None = None
    outages: Outages | None = None
    elector = LeaderElector(kube=kube, settings=settings.lease()) if settings.leader_elect \
        else None
    electing: asyncio.Task[None] | None = None
    probes: HealthServer | None = None
    metrics_token = None
    lost = False
    informers: tuple[Informer, ...] = ()
    clients: VaultClients | None = None
    templates = TemplatePool(
        workers=settings.template_workers, deadline=settings.template_deadline_seconds,
        memory=settings.template_memory_bytes,
    )
    try:
        def alive() -> str | None:
            if stop.is_set():
                return None  # stopping on purpose: let the grace period run
            dead = [t.get_name() for t in (*tasks, *([electing] if electing else []))
                    if t.done()]
            return f"stopped unexpectedly: {', '.join(dead)}" if dead else None

        def ready() -> str | None:
            if not informers:
                return "starting: the fingerprint key is not loaded yet"
            waiting = [i.resource.plural for i in informers if not i.synced.is_set()]
            if waiting:
                return f"caches not synced: {', '.join(waiting)}"
            if elector is not None and not elector.ready():
                return f"leader election: {elector.state}, the Lease not read lately"
            return None

        # First of all, so that the liveness probe answers while syncd waits for the API
        # server (a restart would not make it answer sooner).
        if settings.health_address:
            probes = HealthServer(address=settings.health_address, alive=alive, ready=ready)
            await probes.start()
            if health is not None:
                health.append(probes)

        hmac_key = await _fingerprint_key(kube, namespace=settings.namespace, stop=stop)
        if hmac_key is None:
            return
        watch = settings.watch_namespaces
        # The default VaultAuth and VaultConnection live in syncd's own namespace.
        referable = (*watch, settings.namespace) if watch else ()
        auth_globals = Informer(kube=kube, resource=VAULT_AUTH_GLOBAL, namespaces=referable,
                                transform=slim)
        transformations = Informer(kube=kube, resource=SECRET_TRANSFORMATION,
                                   namespaces=referable, transform=slim)
        dynamic_secrets = Informer(kube=kube, resource=VAULT_DYNAMIC_SECRET, namespaces=watch,
                                   transform=slim)
        pki_secrets = Informer(kube=kube, resource=VAULT_PKI_SECRET, namespaces=watch,
                               transform=slim)
        caches = Caches(
            static_secrets=Informer(kube=kube, resource=VAULT_STATIC_SECRET, namespaces=watch,
                                    transform=slim),
            auths=Informer(kube=kube, resource=VAULT_AUTH, namespaces=referable, transform=slim),
            connections=Informer(kube=kube, resource=VAULT_CONNECTION, namespaces=referable,
                                 transform=slim),
            secrets=Informer(
                kube=kube, resource=SECRETS, namespaces=watch, label_selector=MANAGED_SELECTOR,
                transform=slim_secret(hmac_key),  # their data as a keyed MAC only
            ),
            auth_globals=auth_globals, transformations=transformations,
        )
        informers = (caches.auths, caches.connections, caches.secrets, caches.static_secrets,
                     auth_globals, transformations, dynamic_secrets, pki_secrets)
        recorder = EventRecorder(kube=kube, component=COMPONENT, instance=socket.gethostname())
        addresses = AllowedAddresses(
            patterns=None if settings.allowed_vault_addresses is None else tuple(
                AddressPattern.parse(p) for p in settings.allowed_vault_addresses),
            operator_namespace=settings.namespace, connections=lambda: caches.connections,
        )
        clients = VaultClients(kube=kube, pool=pool, addresses=addresses,
                               api_audiences=await asyncio.to_thread(api_server_audiences))
        # One probe per VaultConnection while its Vault is away, for every kind's objects.
        outages = Outages(probe=HealthProbe(clients=clients, pool=pool))
        controller = Controller(
            caches=caches, clients=clients, pool=pool,
            recorder=recorder, status=StatusWriter(kube=kube), kube=kube,
            hmac_key=hmac_key, operator_namespace=settings.namespace, templates=templates,
            debounce_seconds=settings.debounce_seconds, outages=outages,
        )
        rollouts = controller.rollouts
        others = [
            kind(caches=caches, clients=clients, pool=pool, recorder=recorder,
                 status=StatusWriter(kube=kube, resource=resource), kube=kube,
                 hmac_key=hmac_key, operator_namespace=settings.namespace, templates=templates,
                 debounce_seconds=settings.debounce_seconds, owners=informer, outages=outages)
            for kind, informer, resource in (
                (DynamicSecrets, dynamic_secrets, VAULT_DYNAMIC_SECRET),
                (PKISecrets, pki_secrets, VAULT_PKI_SECRET))]
        metrics = Metrics(
            queue_depth=lambda: _depth(queue, *(k.queue for k in kinds)),
            leader=lambda: elector is None or elector.state == "leader",
            parked=outages.parked,
        )
        # Before any task is created: they inherit this context, and count into ``metrics``.
        metrics_token = metrics.activate()
        # A failing object is retried within its refreshAfter (retry_bound), however long the
        # backoff has grown.
        queue = WorkQueue(
            worker=counted(metrics, controller.reconcile), concurrency=settings.concurrency,
            backoff_cap=settings.backoff_max_seconds, backoff_cap_of=controller.retry_bound,
        )
        kinds.extend(
            Kind(informer=other.owners, controller=other, queue=WorkQueue(
                worker=counted(metrics, other.reconcile), concurrency=settings.concurrency,
                backoff_cap=settings.backoff_max_seconds, backoff_cap_of=other.retry_bound))
            for other in others)
        for work, owner in ((queue, controller), *((k.queue, k.controller) for k in kinds)):
            outages.resume_with(owner.kind, work.add)
        vss_kind = controller.kind
        refreshes = Refreshes(queue=queue, held=lambda key: outages is not None and
                              outages.holds(vss_kind, key))
        changes = Changes(queue=queue, reschedule=refreshes.ensure,
                          safety_seconds=settings.instant_updates.safety_seconds)
        instant = make_source(settings.instant_updates, changes=changes, controller=controller,
                              clients=clients)
        _connect_handlers(
            caches=caches, queue=queue, refreshes=refreshes, controller=controller,
            changes=changes, default_refresh=settings.default_refresh_seconds, kinds=kinds,
        )
        for informer in informers:
            tasks.append(asyncio.create_task(informer.run(), name=informer.resource.plural))

        async def all_synced() -> None:
            await asyncio.gather(*(i.synced.wait() for i in informers))

        if not await _first(all_synced(), stop):
            return
        if elector is not None:
            log.info("caches synced, electing a leader", lease=elector.path,
                     replica=elector.settings.identity)
            electing = asyncio.create_task(elector.run(), name="leader-election")
            if not await _first(elector.leading.wait(), stop, electing):
                if electing.done() and not stop.is_set():
                    electing.result()  # the election failed: its error ends syncd
                    raise RuntimeError("leader election ended without leading")
                return
        refreshes.start()
        tasks.append(asyncio.create_task(queue.run(), name="queue"))
        if instant is not None:
            tasks.append(asyncio.create_task(instant.run(), name="instant-updates"))
        for kind in kinds:
            tasks.append(asyncio.create_task(
                kind.queue.run(), name=f"queue-{kind.informer.resource.plural}"))
        log.info("ready", objects=len(caches.static_secrets), namespace=settings.namespace,
                 watching=list(watch) or "all namespaces",
                 leader=elector.settings.identity if elector else None)
        await _first(stop.wait(), stop, *([electing] if electing else []))
        lost = not stop.is_set()
        log.info("stopping", in_flight=queue.in_flight,
                 why="leadership lost" if lost else "signalled")
    finally:
        grace = settings.grace_seconds
        if lost and elector is not None:
            # Another replica may lead from lease duration after our last renewal; we noticed
            # the loss renew deadline (plus up to one retry) after it. Only what is left of
            # that window is safe for finishing reconciles without two leaders writing.
            lease = elector.settings
            grace = min(grace, max(0.0, lease.lease_duration - lease.renew_deadline
                                   - lease.retry_period))
        await asyncio.gather(*(q.close(grace=grace) for q in (queue, *(k.queue for k in kinds))
                               if q is not None))
        await templates.close()  # after the queues: no render is running any more
        for pending in (rollouts, *(k.controller.rollouts for k in kinds)):
            if pending is not None:
                await pending.close()
        if refreshes is not None:
            refreshes.shutdown()
        if outages is not None:
            await outages.close()
        if electing is not None:
            electing.cancel()
            await asyncio.gather(electing, return_exceptions=True)
        if elector is not None and stop.is_set() and not lost:
            # Only at a clean stop: a crash keeps the Lease until it expires, which is what
            # keeps a half-dead leader and a new one from working at the same time.
            await elector.release()
        if probes is not None:
            await probes.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kube.close()
        if clients is not None:
            await clients.close()  # the aiohttp sessions of the Vault reads
        # A Vault read cancelled at the end of the grace period keeps its thread until the
        # request returns or times out (threads cannot be cancelled). Waiting for it here would
        # block the event loop, and the stop, for up to the Vault client's timeout: let the
        # pool wind down on a thread of its own.
        threading.Thread(target=pool.shutdown, name="vault-pool-shutdown", daemon=True).start()
        if metrics_token is not None:
            Metrics.deactivate(metrics_token)
        log.info("stopped")
    if lost:
        raise LeadershipLost("the leader Lease was not renewed within the renew deadline")


@dataclass(frozen=True)
class Kind:
    """A kind with a controller of its own (VaultDynamicSecret, VaultPKISecret)."""

    informer: Informer
    controller: Controller
    queue: WorkQueue[Key]


def _depth(*queues: WorkQueue[Key] | None) -> tuple[int, int]:
    """Objects waiting in the work queues, and being reconciled."""
    return (sum(len(q) for q in queues if q is not None),
            sum(q.in_flight for q in queues if q is not None))


async def _first(wanted: Awaitable[object], stop: asyncio.Event,
                 *others: asyncio.Task[None]) -> bool:
    """Wait for ``wanted``, ``stop`` or the end of one of ``others``; True if ``wanted`` won."""
    goal = asyncio.ensure_future(wanted)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([goal, stopping, *others], return_when=asyncio.FIRST_COMPLETED)
        return goal.done() and not stop.is_set()
    finally:
        for task in (goal, stopping):
            task.cancel()
        await asyncio.gather(goal, stopping, return_exceptions=True)


async def _fingerprint_key(kube: Kube, *, namespace: str, stop: asyncio.Event) -> bytes | None:
    """The fingerprint key; the API server may not answer yet at start-up, so retry."""
    log = structlog.get_logger("syncd")
    for attempt in itertools.count():
        try:
            return await load_or_create(kube, namespace=namespace)
        except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            delay = min(30.0, 0.5 * 2**attempt)
            log.warning("fingerprint key not loaded, retrying", error=str(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return None
    return None


def _connect_handlers(
    *,
    caches: Caches,
    queue: WorkQueue[Key],
    refreshes: Refreshes,
    controller: Controller,
    changes: Changes,
    default_refresh: float,
    kinds: list[Kind],
) -> None:
    log = structlog.get_logger("syncd")

    def on_static_secret(change: Change) -> None:
        key = key_of(change.object)
        if change.type == "DELETED":
            queue.forget(key)
            refreshes.remove(key)
            controller.forget(key)
            changes.forget(key)
            return
        refreshes.ensure(key, changes.refresh_seconds(key, change.object, default_refresh))
        old_generation = ((change.old or {}).get("metadata") or {}).get("generation")
        if change.old is None or change.object["metadata"].get("generation") != old_generation:
            # New, or its spec changed: at once, ahead of due refreshes (someone waits for
            # it); status writes are ignored.
            queue.add(key, urgent=True)

    def on_auth_or_connection(change: Change) -> None:
        old_generation = ((change.old or {}).get("metadata") or {}).get("generation")
        if change.old is not None and change.type == "MODIFIED" and \
                change.object["metadata"].get("generation") == old_generation:
            return
        changes.references_changed()
        # Rare and cheap: every VaultStaticSecret takes another look; unaffected ones find
        # nothing changed.
        for obj in caches.static_secrets:
            queue.add(key_of(obj))
        for kind in kinds:
            for obj in kind.informer:
                kind.queue.add(key_of(obj))

    def on_change_of(kind: Kind) -> Callable[[Change], None]:
        def on_change(change: Change) -> None:
            key = key_of(change.object)
            if change.type == "DELETED":
                kind.queue.forget(key)
                kind.controller.forget(key)
                return
            old = (change.old or {}).get("metadata") or {}
            new = change.object["metadata"]
            if change.old is None or new.get("generation") != old.get("generation") or \
                    bool(new.get("deletionTimestamp")) != bool(old.get("deletionTimestamp")):
                # New, its spec changed, or deleted (the finalizer): ahead of due work.
                kind.queue.add(key, urgent=True)
        return on_change

    def on_secret(change: Change) -> None:
        key = key_of(change.object)
        for owners, work in ((controller, queue), *((k.controller, k.queue) for k in kinds)):
            owner = owners.destinations.get(key)
            if owner is None:
                continue
            secret = None if change.type == "DELETED" else change.object
            if owners.drifted(secret, owner):
                log.info("drift", secret_name="/".join(key), change=change.type,
                         owner="/".join(owner))
                work.add(owner, urgent=True)  # someone edited it: repair ahead of refreshes

    caches.static_secrets.add_handler(on_static_secret)
    for kind in kinds:
        kind.informer.add_handler(on_change_of(kind))
    caches.auths.add_handler(on_auth_or_connection)
    caches.connections.add_handler(on_auth_or_connection)
    # A VaultAuthGlobal or SecretTransformation changes what the objects using it resolve to.
    for shared in (caches.auth_globals, caches.transformations):
        if shared is not None:
            shared.add_handler(on_auth_or_connection)
    caches.secrets.add_handler(on_secret)
