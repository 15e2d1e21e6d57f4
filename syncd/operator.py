"""Wiring: caches, the work queue, the refresh schedule, rollouts — and a clean stop.

Start-up order matters: every cache is listed before the first reconcile, so a reconcile never
mistakes "not in the cache yet" for "does not exist" (which would, for example, try to create a
Secret that is there). Shutdown runs in the reverse order, on SIGTERM:

1. the queue stops handing out work; reconciles in flight get ``grace`` seconds to finish;
2. pending (debounced) rollout restarts are run now rather than lost;
3. the scheduler, the watches and the clients are stopped and closed.

Every background task is created here, owned here, and cancelled and awaited here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from dataclasses import dataclass

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from plumbing.events import EventRecorder
from plumbing.kube import SECRETS, Kube, KubeError, connect
from plumbing.queueing import WorkQueue
from plumbing.vault import VaultPool
from plumbing.watching import Change, Informer, key_of
from syncd.controller import Caches, Controller, Key
from syncd.destinations import MANAGED_SELECTOR
from syncd.hmac_key import load_or_create
from syncd.rollout import Rollouts
from syncd.specs import (
    VAULT_AUTH,
    VAULT_CONNECTION,
    VAULT_STATIC_SECRET,
    SpecError,
    parse_vault_static_secret,
)
from syncd.status import StatusWriter
from syncd.vault_clients import VaultClients

COMPONENT = "vault-syncd"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What ``syncd run`` was told; see ``syncd run --help``."""

    kubeconfig: str | None = None
    namespace: str = "vault-syncd"
    watch_namespace: str | None = None
    concurrency: int = 4
    vault_threads: int = 4
    debounce_seconds: float = 2.0
    grace_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    default_refresh_seconds: float = 60.0


class Refreshes:
    """The periodic refresh of every VaultStaticSecret, one apscheduler job each."""

    def __init__(self, *, queue: WorkQueue[Key]) -> None:
        self._queue = queue
        self._scheduler = AsyncIOScheduler()
        self._intervals: dict[Key, float] = {}

    def start(self) -> None:
        self._scheduler.start()

    def ensure(self, key: Key, seconds: float) -> None:
        if self._intervals.get(key) == seconds:
            return
        self._intervals[key] = seconds
        # Jitter spreads objects created together (a kubectl apply of fifty) over time.
        trigger = IntervalTrigger(seconds=seconds, jitter=min(seconds * 0.1, 30.0))
        self._scheduler.add_job(
            self._due, trigger, args=[key], id="/".join(key), replace_existing=True,
            coalesce=True, max_instances=1,
        )

    async def _due(self, key: Key) -> None:
        # A failing object already has its retry scheduled by the queue's backoff; a refresh
        # on top would turn a long backoff (a sealed Vault) back into one try per refresh.
        if not self._queue.failures(key):
            self._queue.add(key)

    def remove(self, key: Key) -> None:
        if self._intervals.pop(key, None) is not None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job("/".join(key))

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


def _refresh_seconds(obj: dict[str, object], default: float) -> float:
    try:
        return parse_vault_static_secret(obj).refresh_after_seconds
    except SpecError:
        return default


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run the controller until ``stop`` is set."""
    log = structlog.get_logger("syncd")
    kube = await connect(kubeconfig=settings.kubeconfig)
    pool = VaultPool(max_workers=settings.vault_threads)
    tasks: list[asyncio.Task[None]] = []
    queue: WorkQueue[Key] | None = None
    rollouts: Rollouts | None = None
    refreshes: Refreshes | None = None
    try:
        hmac_key = await _fingerprint_key(kube, namespace=settings.namespace, stop=stop)
        if hmac_key is None:
            return
        watch = settings.watch_namespace
        caches = Caches(
            static_secrets=Informer(kube=kube, resource=VAULT_STATIC_SECRET, namespace=watch),
            auths=Informer(kube=kube, resource=VAULT_AUTH),
            connections=Informer(kube=kube, resource=VAULT_CONNECTION),
            secrets=Informer(
                kube=kube, resource=SECRETS, namespace=watch, label_selector=MANAGED_SELECTOR
            ),
        )
        recorder = EventRecorder(kube=kube, component=COMPONENT, instance=socket.gethostname())
        controller = Controller(
            caches=caches, clients=VaultClients(kube=kube, pool=pool), pool=pool,
            recorder=recorder, status=StatusWriter(kube=kube), kube=kube,
            hmac_key=hmac_key, operator_namespace=settings.namespace,
            debounce_seconds=settings.debounce_seconds,
        )
        rollouts = controller.rollouts
        queue = WorkQueue(
            worker=controller.reconcile, concurrency=settings.concurrency,
            backoff_cap=settings.backoff_max_seconds,
        )
        refreshes = Refreshes(queue=queue)
        _connect_handlers(
            caches=caches, queue=queue, refreshes=refreshes, controller=controller,
            default_refresh=settings.default_refresh_seconds,
        )
        for informer in (caches.auths, caches.connections, caches.secrets,
                         caches.static_secrets):
            tasks.append(asyncio.create_task(informer.run(), name=informer.resource.plural))
        async def all_synced() -> None:
            await asyncio.gather(*(i.synced.wait() for i in (
                caches.auths, caches.connections, caches.secrets, caches.static_secrets)))

        async def stopping() -> None:
            await stop.wait()

        synced = asyncio.create_task(all_synced())
        stopped = asyncio.create_task(stopping())
        await asyncio.wait([synced, stopped], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            synced.cancel()
            return
        refreshes.start()
        tasks.append(asyncio.create_task(queue.run(), name="queue"))
        log.info("ready", objects=len(caches.static_secrets), namespace=settings.namespace)
        await stopped
        log.info("stopping", in_flight=queue.in_flight)
    finally:
        if queue is not None:
            await queue.close(grace=settings.grace_seconds)
        if rollouts is not None:
            await rollouts.close()
        if refreshes is not None:
            refreshes.shutdown()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kube.close()
        # A Vault read cancelled at the end of the grace period keeps its thread until the
        # request returns or times out (threads cannot be cancelled). Waiting for it here would
        # block the event loop, and the stop, for up to the Vault client's timeout: let the
        # pool wind down on a thread of its own.
        threading.Thread(target=pool.shutdown, name="vault-pool-shutdown", daemon=True).start()
        log.info("stopped")


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
    default_refresh: float,
) -> None:
    log = structlog.get_logger("syncd")

    def on_static_secret(change: Change) -> None:
        key = key_of(change.object)
        if change.type == "DELETED":
            queue.forget(key)
            refreshes.remove(key)
            controller.forget(key)
            return
        refreshes.ensure(key, _refresh_seconds(change.object, default_refresh))
        old_generation = ((change.old or {}).get("metadata") or {}).get("generation")
        if change.old is None or change.object["metadata"].get("generation") != old_generation:
            queue.add(key)  # new, or its spec changed: at once (status writes are ignored)

    def on_auth_or_connection(change: Change) -> None:
        old_generation = ((change.old or {}).get("metadata") or {}).get("generation")
        if change.old is not None and change.type == "MODIFIED" and \
                change.object["metadata"].get("generation") == old_generation:
            return
        # Rare and cheap: every VaultStaticSecret takes another look; unaffected ones find
        # nothing changed.
        for obj in caches.static_secrets:
            queue.add(key_of(obj))

    def on_secret(change: Change) -> None:
        key = key_of(change.object)
        owner = controller.destinations.get(key)
        if owner is None:
            return
        secret = None if change.type == "DELETED" else change.object
        if controller.drifted(secret, owner):
            log.info("drift", secret_name="/".join(key), change=change.type,
                     owner="/".join(owner))
            queue.add(owner)

    caches.static_secrets.add_handler(on_static_secret)
    caches.auths.add_handler(on_auth_or_connection)
    caches.connections.add_handler(on_auth_or_connection)
    caches.secrets.add_handler(on_secret)
