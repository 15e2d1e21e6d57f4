"""Instant updates: a change notice from Vault moves a VaultStaticSecret's next read to now.

Polling bounds a rotation's delay by ``refreshAfter``. A *change source* (Vault Enterprise's
event notifications, :mod:`syncd.events_source`; the audit relay on Community Vault,
:mod:`syncd.audit_source`) tells syncd that a KV path was written, and every VaultStaticSecret
with ``syncConfig.instantUpdates`` that reads that mount and path is reconciled at once.

A notice never carries data and is never trusted for any: it is a mount and a path (the
relay's version number is only a hint for the log). All it does is put the object in the work
queue, in its urgent lane (ahead of every refresh that is due: with thousands of objects the
queue holds a backlog of them, and a notice behind it waited minutes), and the reconcile that
follows reads Vault as any refresh does, through that object's own client, with its own
VaultAuth's token. So a notice cannot widen what a tenant reads: a
notice for a path no instant VaultStaticSecret references schedules nothing, and one for a path
a tenant references makes that tenant read what it could read anyway, a little earlier. Each
source narrows further what a notice may schedule (``among``): an event received with one
login's token only schedules the objects using that login, a relay's notice only those whose
VaultConnection has the relay's Vault address.

Every stream loses entries (a reconnect, a full buffer, a relay restart) and some changes emit
none (version cleanup, a snapshot restore), so polling goes on underneath: while the source
covering an object is connected, at the longer *safety interval* (never shorter than
``refreshAfter``); while it is not, at ``refreshAfter`` as without instant updates.

When a source connects or drops, every object it covers changes interval at once. Were each
first refresh one interval away, they would all come together: at a drop, every read within the
last 10 % of ``refreshAfter`` (the jitter), at a connect, all together a safety interval later,
and again every interval after that. So each object's first refresh under its new interval is
drawn anywhere within that interval: the reads spread evenly over it, and none comes later
than the interval allows (a spread only ever brings a refresh forward).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from plumbing.queueing import WorkQueue, jittered_backoff
from syncd.specs import SpecError, VaultStaticSecret, parse_vault_static_secret

Key = tuple[str, str]
SourceName = Literal["none", "events", "audit"]
SOURCES: tuple[SourceName, ...] = ("none", "events", "audit")

#: The request paths of one kv-v2 secret, below its mount: every one of them changes what a
#: read of the secret returns (a write, a soft delete, a destroy, new metadata...).
KV2_AREAS = ("data", "metadata", "delete", "undelete", "destroy")
#: Objects rescheduled per turn of the event loop after a source connects or drops.
HEALTH_BATCH = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something changed at ``path`` (Vault's request path, below the mount) of ``mount``."""

    mount: str  # without slashes: "secret"
    path: str  # "data/app/db" for kv-v2, "app/db" for kv-v1
    version: int | None = None  # the relay's hint, when Vault's response had one


def notice(*, mount_point: str, request_path: str, version: int | None = None) -> Notice | None:
    """The notice for Vault's ``request_path`` (``secret/data/app``) on ``mount_point``."""
    mount = mount_point.strip("/")
    if not mount or not request_path.startswith(mount + "/"):
        return None
    inner = request_path[len(mount) + 1:].strip("/")
    return Notice(mount=mount, path=inner, version=version) if inner else None


def request_paths(spec: VaultStaticSecret) -> tuple[str, ...]:
    """The request paths (below the mount) whose change changes what ``spec`` reads."""
    if spec.kv_type == "kv-v1":
        return (spec.path,)
    return tuple(f"{area}/{spec.path}" for area in KV2_AREAS)


class Reschedule(Protocol):
    """Refresh ``key`` every ``seconds``, the first time in ``first`` seconds (never later
    than one interval): :meth:`syncd.refreshing.Refreshes.ensure`."""

    def __call__(self, key: Key, seconds: float, /, *, first: float | None = None) -> None: ...


class Source(Protocol):
    """A change source: notices into :meth:`Changes.notify`, health into :meth:`covers`."""

    def covers(self, spec: VaultStaticSecret) -> bool:
        """True while notices for ``spec`` would arrive (the stream is connected)."""

    async def run(self) -> None:
        """Receive notices until cancelled."""


@dataclass(slots=True)
class _Interest:
    spec: VaultStaticSecret
    seconds: float  # the refresh interval last asked for


class Changes:
    """Which VaultStaticSecrets want instant updates, and what a notice schedules.

    ``queue`` runs the reconciles; ``reschedule(key, seconds)`` sets an object's refresh
    interval (the operator's refresh schedule). The operator calls :meth:`refresh_seconds`
    for every VaultStaticSecret it sees and :meth:`forget` when one is deleted; the source,
    set with :meth:`attach`, calls :meth:`notify` and :meth:`health_changed`, and awaits
    :meth:`apply_health` in its own task when :attr:`changed` is set.
    """

    def __init__(
        self, *, queue: WorkQueue[Key], reschedule: Reschedule, safety_seconds: float,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._reschedule = reschedule
        self._rng = rng or random.Random()
        self._safety = safety_seconds
        self._interests: dict[Key, _Interest] = {}
        #: (mount, request path) -> the objects reading it.
        self._index: dict[tuple[str, str], set[Key]] = {}
        self._source: Source | None = None
        self._told: set[Key] = set()
        self._health_dirty = False
        #: Set whenever the objects or their VaultAuths and VaultConnections change: a source
        #: that keeps one stream per login looks again at which it needs.
        self.changed = asyncio.Event()
        self._log = structlog.get_logger("syncd.changes")

    def attach(self, source: Source) -> None:
        self._source = source

    @property
    def specs(self) -> list[VaultStaticSecret]:
        return [interest.spec for interest in self._interests.values()]

    # --- the operator's side -----------------------------------------------------------------

    def refresh_seconds(self, key: Key, obj: dict[str, object], default: float) -> float:
        """The refresh interval of ``obj``, remembering it if it wants instant updates."""
        try:
            spec = parse_vault_static_secret(obj)
        except SpecError:
            self.forget(key)
            return default
        if not spec.instant_updates or self._source is None:
            self.forget(key)
            if spec.instant_updates and key not in self._told:
                self._told.add(key)  # once per object and process: it is not an error
                self._log.info("instantUpdates without a change source: polling every "
                               "refreshAfter (see --instant-updates-source)",
                               namespace=key[0], name=key[1])
            return spec.refresh_after_seconds
        previous = self._interests.get(key)
        if previous is not None and _same_reference(previous.spec, spec):
            previous.spec = spec  # a status write, a label: no index or stream to change
            previous.seconds = self._interval(spec)
            return previous.seconds
        self._unindex(key)
        interest = _Interest(spec=spec, seconds=self._interval(spec))
        self._interests[key] = interest
        for path in request_paths(spec):
            self._index.setdefault((spec.mount, path), set()).add(key)
        self.changed.set()
        return interest.seconds

    def forget(self, key: Key) -> None:
        if self._unindex(key):
            self.changed.set()

    def references_changed(self) -> None:
        """A VaultAuth or VaultConnection changed: logins and addresses may have too."""
        self.changed.set()
        self.health_changed()

    def _unindex(self, key: Key) -> bool:
        interest = self._interests.pop(key, None)
        if interest is None:
            return False
        for path in request_paths(interest.spec):
            keys = self._index.get((interest.spec.mount, path))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._index[(interest.spec.mount, path)]
        return True

    # --- the source's side -------------------------------------------------------------------

    def notify(
        self, change: Notice, *, among: Callable[[VaultStaticSecret], bool] | None = None,
    ) -> list[Key]:
        """Reconcile now every instant object reading ``change``'s path (and in ``among``)."""
        scheduled = []
        for key in self._index.get((change.mount, change.path), ()):
            interest = self._interests[key]
            if among is not None and not among(interest.spec):
                continue
            self.schedule(key)
            scheduled.append(key)
        if scheduled:
            self._log.debug("change notice", mount=change.mount, path=change.path,
                            version=change.version, scheduled=["/".join(k) for k in scheduled])
        return scheduled

    def schedule(self, key: Key, *, urgent: bool = True) -> None:
        """Reconcile ``key`` now, ahead of the refreshes that are due (``urgent``: a notice;
        a source's catch-up after a gap is a refresh like the others, not urgent).

        Also when it is failing on its own (a deleted latest version, a 403): its source just
        changed, which is what it waits for. A Vault that is away holds its objects where no
        notice reaches Vault (:mod:`syncd.outages`: a parked object's reconcile sends nothing).
        """
        self._queue.add(key, urgent=urgent)

    def health_changed(self) -> None:
        """A stream connected or dropped: the source's :meth:`apply_health` moves intervals."""
        self._health_dirty = True
        self.changed.set()

    async def apply_health(self) -> None:
        """Move the refresh intervals the last connects and drops changed, a batch at a time,
        each object's first refresh drawn within its new interval (see the module's docstring).

        Thousands of objects rescheduled in one go would hold the event loop, and each
        reschedule wakes the scheduler through the loop's self-pipe: filled, it loses the
        signals that arrive meanwhile (a SIGTERM). So the loop gets a turn every batch.
        """
        if not self._health_dirty:
            return
        self._health_dirty = False
        for index, (key, interest) in enumerate(list(self._interests.items())):
            if index and index % HEALTH_BATCH == 0:
                await asyncio.sleep(0)
            if self._interests.get(key) is not interest:
                continue  # forgotten or replaced meanwhile
            seconds = self._interval(interest.spec)
            if seconds != interest.seconds:
                interest.seconds = seconds
                self._reschedule(key, seconds, first=self._rng.uniform(0.0, seconds))

    def _interval(self, spec: VaultStaticSecret) -> float:
        if self._source is not None and self._source.covers(spec):
            return max(spec.refresh_after_seconds, self._safety)
        return spec.refresh_after_seconds


def _same_reference(old: VaultStaticSecret, new: VaultStaticSecret) -> bool:
    """Whether ``new`` reads the same thing through the same login as ``old``."""
    return (old.mount, old.path, old.kv_type, old.vault_auth_ref, old.vault_namespace) == (
        new.mount, new.path, new.kv_type, new.vault_auth_ref, new.vault_namespace)


async def reconnect_pause(attempt: int, *, cap: float = 30.0) -> None:
    """The wait before reconnect number ``attempt`` (from 1) of a stream: short, growing."""
    await asyncio.sleep(jittered_backoff(attempt, base=0.2, cap=cap))
