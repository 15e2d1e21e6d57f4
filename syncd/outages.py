"""Vault outages, per VaultConnection: one probe stands for every object waiting on it.

A sealed, unreachable or failing Vault fails every object that reads through it the same way.
Each retrying on its own backoff was loud while Vault was away (one request per object per
retry) and slow once it came back (the backoff had grown to minutes: recovery took up to 5
minutes after Vault answered again). So an outage is a property of the connection, not of
each object:

- A Vault request (a read, a login, an issue, a renewal) failing with an error that may mean
  Vault itself is away — :class:`~syncd.sources.VaultSealed`, :class:`~syncd.sources.
  VaultUnavailable` (refused, reset, timed out, 5xx, 429), a login's ``AuthError`` with those
  reasons — is *confirmed* by one ``GET sys/health``. If Vault answers 200 (standbys
  included), the error was about that request (a slow mount, a plugin's 500, a rate limit on
  one path): the object backs off on its own, within its ``refreshAfter``. Otherwise the
  connection is *down*. A verdict of "up" is reused for :data:`HEALTHY_FOR`, so objects failing
  on their own do not each cost a probe.
- While a connection is down, its objects are *parked*: a reconcile stops before any Vault
  request (:meth:`Outages.down` is asked before the client), the status says so once per
  object and outage (:meth:`Outages.park` answers whether to), and no refresh runs for them
  (``held``). Not at once: an outage shorter than :data:`QUIET_FOR` writes no status at all.
  A Vault pod restarted and unsealed again within seconds (an upgrade, a reschedule, the
  unsealer at work) would otherwise cost every object a status write and an Event when it
  parks and another status write when it resumes — for 1,000 objects some 3,000 requests to
  the API server within a few seconds, about nothing a user could act on (each Secret keeps
  its data throughout). The connection's log line and the parked-objects metric say it at
  once; once the outage has lasted :data:`QUIET_FOR`, every parked object is sent through its
  queue once more and its status and Event say what it waits for.
- One probe per connection runs meanwhile, after a jittered backoff from
  :data:`PROBE_BASE` to :data:`PROBE_CAP` seconds; the first 200 ends the outage and puts
  every parked object back in its work queue at once, where they run at the queue's
  concurrency. So objects resume within about a second of Vault answering, and a Vault that
  stays sealed for a day sees about two requests a second from syncd, whatever the number of
  objects.

``sys/health`` answering does not prove the data path works: a proxy or load balancer in front
of Vault may reset, refuse or answer 502/503/504 to the reads while the health check (often
routed or cached differently) answers 200. Each object then failed "on its own" and retried
alone — a request per object per retry, twice each as aiohttp resends an idempotent request
once when a reused connection drops. So the reads themselves are evidence too (a *path
outage*): when :data:`PATH_FAILURES` distinct objects of one connection fail without an
answer (see :func:`path_failure`) within :data:`PATH_WINDOW` seconds, and no read of that
connection was answered in between, the connection is down even though ``sys/health``
answers. Its objects park as for a sealed Vault, and instead of ``sys/health`` the probe is
one parked object's own read (the *canary*, taken in turn so that one object's own trouble
cannot hold the others back: a half-open circuit breaker), at the probes' cadence. The first
canary Vault answers — with data or with any status of its own (a 404, a 403, a 500) — ends
the outage. One object failing alone (a bad path, a 500 or 403 for one secret) is never
evidence about its neighbours: Vault answered it.

A connection is known by its VaultConnection object (namespace, name, uid, generation: how the
client cache in :mod:`syncd.vault_clients` tells configurations apart), not by its address.
Two tenants' VaultConnections to one address differ in CA, TLS server name, headers and
timeout: one tenant's broken CA or a 1 ms timeout fails that tenant's connection only, and must
never park another tenant's objects. The probe is made from the VaultConnection alone (no
token, no VaultAuth headers, no Vault namespace: ``sys/health`` is unauthenticated and lives in
the root namespace), so nothing a tenant puts in a VaultAuth or a VaultStaticSecret can make it
fail. A Vault namespace that is unavailable on its own (a locked namespace, a sick mount)
answers its requests with errors while ``sys/health`` answers 200: its objects back off on
their own and park nobody else's. A ``sys/health`` hidden behind a proxy (4xx) cannot tell
anything, and is taken as up: the objects then back off on their own, as without this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import structlog

from plumbing.queueing import jittered_backoff
from syncd.sources import VaultSealed, VaultUnavailable
from syncd.specs import VaultConnection

Key = tuple[str, str]
#: A connection: its VaultConnection's namespace, name, uid and generation.
Identity = tuple[str, str, str, int]
#: A parked object: its kind (the resource's plural, one work queue each) and its key.
Entry = tuple[str, Key]
#: What a probe found: None when Vault answers; else the condition's reason and what is wrong.
Verdict = tuple[str, str] | None
Probe = Callable[[VaultConnection], Awaitable[Verdict]]

#: The reasons of errors that may mean Vault itself is away (a probe decides).
OUTAGE_REASONS = frozenset({"VaultSealed", "VaultUnavailable"})
#: The probes of a down connection: the first after about PROBE_BASE seconds, then doubling up
#: to PROBE_CAP (jittered between half of it and all of it).
PROBE_BASE = 0.2
PROBE_CAP = 0.6
#: How long a "Vault answers" verdict stands for further failures of the same connection.
HEALTHY_FOR = 1.0
#: How long an outage lasts before the statuses of its parked objects say so.
QUIET_FOR = 5.0
#: A path outage: this many distinct objects failing without an answer, within this many
#: seconds, with no answered read of the connection in between.
PATH_FAILURES = 3
PATH_WINDOW = 5.0
#: The longest the probe loop waits for a canary's read (a queue busy with other work, a
#: read that hangs until the client's timeout) before it sends another object.
CANARY_WAIT = 15.0
#: What a request that got no answer failed with (plumbing.vault's names) that says nothing
#: about the path asked: the way to Vault is broken. A ReadTimeout is not one: a slow mount or
#: plugin times out its own paths while the others answer.
NO_ANSWER = frozenset({"ConnectionError", "ConnectTimeout", "SSLError", "ProxyError"})
#: Gateways' words for "Vault behind me is not answering" (a 503 from Vault itself, not
#: sealed, is a standby that cannot reach the active node: the same for every path). A plain
#: 500 is Vault's answer about the request (a plugin's or the storage's error for that path,
#: a bad template in a policy): per path. 429 is a rate-limit quota, which may be per mount.
GATEWAY = frozenset({502, 503, 504})


def path_failure(error: BaseException) -> bool:
    """Whether a read's failure says the way to Vault is broken, not that path."""
    if isinstance(error, VaultSealed):
        return True
    if isinstance(error, VaultUnavailable):
        return error.transport in NO_ANSWER or error.status in GATEWAY
    return False


def identity(connection: VaultConnection) -> Identity:
    return (connection.namespace, connection.name, connection.uid, connection.generation)


@dataclass(eq=False)
class Outage:
    """One connection down: why, since when, and who waits for it."""

    connection: VaultConnection
    reason: str
    problem: str  # what the probe found ("Vault is sealed"), for the status message
    started: float
    parked: dict[Entry, None] = field(default_factory=dict)  # in parking order
    probes: int = 0
    #: A path outage (sys/health answers, the reads do not): the probe is a canary's read.
    path: bool = False
    #: The parked object whose read probes now, and what ends its try (its report).
    canary: Entry | None = None
    tried: asyncio.Event = field(default_factory=asyncio.Event)
    #: Past the quiet time (see QUIET_FOR): the parked objects' statuses are to say so, and
    #: those that did.
    announced: bool = False
    told: set[Entry] = field(default_factory=set)

    @property
    def message(self) -> str:
        connection = self.connection
        probe = "one object's read" if self.path else "one sys/health probe"
        return (f"VaultConnection {connection.namespace}/{connection.name}"
                f" ({connection.address}): {self.problem}; waiting for Vault to answer again"
                f" ({probe} for every object of this connection, no request of"
                " its own meanwhile); the Secret keeps its data")

    def next_canary(self) -> Entry | None:
        """The parked object that tried longest ago (it goes to the back of the line)."""
        entry = next(iter(self.parked), None)
        if entry is not None:
            del self.parked[entry]
            self.parked[entry] = None
        return entry


class Outages:
    """The connections that are down, the objects parked on them, and their probes.

    ``probe`` checks one connection (:class:`HealthProbe`). Each kind registers with
    :meth:`resume_with` how a parked object goes back to work (its queue's ``add``).
    """

    def __init__(
        self, *, probe: Probe, base: float = PROBE_BASE, cap: float = PROBE_CAP,
        healthy_for: float = HEALTHY_FOR, quiet_for: float = QUIET_FOR,
        rng: random.Random | None = None,
    ) -> None:
        self._probe = probe
        self._quiet_for = quiet_for
        self._base = base
        self._cap = cap
        self._healthy_for = healthy_for
        self._rng = rng or random.Random()
        self._down: dict[Identity, Outage] = {}
        #: The probe loop of each down connection, and the confirming probes in flight.
        self._watching: dict[Identity, asyncio.Task[None]] = {}
        #: Every probe loop still running, stopped ones included (awaited on close).
        self._loops: set[asyncio.Task[None]] = set()
        self._checking: dict[Identity, asyncio.Task[Outage | None]] = {}
        #: When sys/health of a connection last answered (loop time).
        self._answered: dict[Identity, float] = {}
        self._where: dict[Entry, Identity] = {}
        #: Per connection, the objects whose reads failed without an answer since the last
        #: answered one, and when (loop time): the evidence of a path outage.
        self._failing: dict[Identity, dict[Entry, float]] = {}
        self._resumers: dict[str, Callable[[Key], None]] = {}
        self._closed = False
        self._log = structlog.get_logger("syncd.outages")

    def resume_with(self, kind: str, add: Callable[[Key], None]) -> None:
        """Parked objects of ``kind`` go back to work through ``add(key)``."""
        self._resumers[kind] = add

    # --- asked by every reconcile ---------------------------------------------------------

    def down(self, connection: VaultConnection) -> Outage | None:
        """The outage of ``connection``, if it is down."""
        return self._down.get(identity(connection))

    def parked(self) -> dict[Key, int]:
        """How many objects wait on each VaultConnection (namespace, name) that is down (for
        the metrics)."""
        counts: dict[Key, int] = {}
        for where, outage in self._down.items():
            counts[where[:2]] = counts.get(where[:2], 0) + len(outage.parked)
        return counts

    @property
    def probing(self) -> list[Identity]:
        """The connections whose probe loop runs (those down)."""
        return [where for where, task in self._watching.items() if not task.done()]

    def holds(self, kind: str, key: Key) -> bool:
        """Whether the object is parked (a refresh would only park it again)."""
        return (kind, key) in self._where

    def park(self, outage: Outage, *, kind: str, key: Key) -> bool:
        """Park the object until ``outage`` ends; True when its status should now say so
        (once per object and outage, and only past the quiet time: see QUIET_FOR)."""
        entry = (kind, key)
        where = identity(outage.connection)
        if outage.canary == entry:  # parked again (its read failed, or its login): next one
            outage.tried.set()
        if self._where.get(entry) != where:
            self.release(kind=kind, key=key)
            if self._down.get(where) is not outage:  # ended meanwhile: nothing to wait for
                self._resume([entry])
                return False
            outage.parked[entry] = None
            self._where[entry] = where
        self._announce_if_due(outage, running=entry)
        if not outage.announced or entry in outage.told:
            return False
        outage.told.add(entry)
        return True

    def release(self, *, kind: str, key: Key) -> None:
        """The object waits no more (deleted, or it reads through another connection now)."""
        entry = (kind, key)
        where = self._where.pop(entry, None)
        if where is None:
            return
        outage = self._down.get(where)
        if outage is None:
            return
        outage.parked.pop(entry, None)
        if outage.canary == entry:
            outage.tried.set()
        if not outage.parked:  # nobody waits for this connection: stop probing it
            self._stop(where, outage)

    def report(self, connection: VaultConnection, *, kind: str, key: Key,
               error: BaseException | None) -> Outage | None:
        """A KV read of the object through ``connection`` was answered (``error`` None, or
        Vault's own refusal) or failed on the way (:func:`path_failure`): the outage the
        object should park on, if the connection is down now (see the module docstring)."""
        where, entry = identity(connection), (kind, key)
        outage = self._down.get(where)
        if error is None or not path_failure(error):  # Vault answered through this path
            self._failing.pop(where, None)
            if outage is not None and outage.path:
                self._end(where, outage, running=entry)
            return None
        if outage is not None:  # parking it again ends a canary's try (see park)
            return outage
        now = _now()
        failing = self._failing.setdefault(where, {})
        failing[entry] = now
        for old in [e for e, when in failing.items() if now - when > PATH_WINDOW]:
            del failing[old]
        if len(failing) < PATH_FAILURES or self._closed:
            return None
        del self._failing[where]
        problem = (f"reads fail without an answer ({_failure_words(error)}) while"
                   " sys/health answers")
        outage = Outage(connection=connection, reason="VaultUnavailable", problem=problem,
                        started=now, path=True)
        self._down[where] = outage
        self._watching[where] = self._loop(self._watch_path(where, outage),
                                           name=f"path outage {where[:2]}")
        self._log.warning("vault reads fail; objects wait for one object's read",
                          connection="/".join(where[:2]), address=connection.address,
                          objects=PATH_FAILURES, problem=problem)
        return outage

    async def confirm(self, connection: VaultConnection) -> Outage | None:
        """After an outage kind of error: the outage if ``connection`` is down (probed now,
        once for every caller), None if Vault answers (the error was the request's own)."""
        where = identity(connection)
        outage = self._down.get(where)
        if outage is not None:
            return outage
        answered = self._answered.get(where)
        if answered is not None and _now() - answered < self._healthy_for:
            return None
        checking = self._checking.get(where)
        if checking is None:
            checking = asyncio.create_task(self._check(connection), name=f"probe {where[:2]}")
            self._checking[where] = checking
        return await asyncio.shield(checking)

    # --- the probes ---------------------------------------------------------------------------

    async def _check(self, connection: VaultConnection) -> Outage | None:
        where = identity(connection)
        try:
            verdict = await self._ask(connection)
            if verdict is None:
                self._mark_answered(where)
                return None
            outage = self._down.get(where)
            if outage is None and not self._closed:
                outage = Outage(connection=connection, reason=verdict[0], problem=verdict[1],
                                started=_now())
                self._down[where] = outage
                self._watching[where] = self._loop(self._watch(where, outage),
                                                   name=f"outage {where[:2]}")
                self._log.warning("vault unavailable; objects wait for one probe",
                                  connection="/".join(where[:2]), address=connection.address,
                                  reason=verdict[0], problem=verdict[1])
            return outage
        finally:
            self._checking.pop(where, None)

    async def _watch(self, where: Identity, outage: Outage) -> None:
        """Probe until Vault answers; then every parked object goes back to work."""
        attempt = 0
        verdict: Verdict = (outage.reason, outage.problem)
        while verdict is not None:
            attempt += 1
            await asyncio.sleep(jittered_backoff(attempt, base=self._base, cap=self._cap,
                                                 rng=self._rng))
            self._announce_if_due(outage)
            verdict = await self._ask(outage.connection)
            outage.probes += 1
            if verdict is not None:
                # What the status says is not rewritten (one write per object and outage).
                outage.reason, outage.problem = verdict
        self._end(where, outage)

    async def _watch_path(self, where: Identity, outage: Outage) -> None:
        """Send one parked object at a time to read, until one is answered (then
        :meth:`report` ends the outage and this task)."""
        attempt = 0
        while True:
            attempt += 1
            await asyncio.sleep(jittered_backoff(attempt, base=self._base, cap=self._cap,
                                                 rng=self._rng))
            self._announce_if_due(outage)
            canary = outage.next_canary()
            if canary is None:
                continue  # the first objects are still being parked
            outage.canary = canary
            outage.tried.clear()
            outage.probes += 1
            self._resume([canary])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outage.tried.wait(), CANARY_WAIT)
            outage.canary = None

    def _end(self, where: Identity, outage: Outage, *, running: Entry | None = None) -> None:
        """Vault answers again: every parked object goes back to work (but ``running``,
        which is at work: the canary reporting its answer)."""
        self._mark_answered(where)
        if self._down.get(where) is outage:
            del self._down[where]
        task = self._watching.pop(where, None)
        if task is not None and task is not asyncio.current_task():  # _watch ends itself
            task.cancel()
        parked = list(outage.parked)
        for entry in parked:
            self._where.pop(entry, None)
        self._log.info("vault answers again; resuming", connection="/".join(where[:2]),
                       down_for=round(_now() - outage.started, 3), probes=outage.probes,
                       resumed=len(parked))
        self._resume([entry for entry in parked if entry != running])

    def _announce_if_due(self, outage: Outage, *, running: Entry | None = None) -> None:
        """Past the quiet time, once: every parked object (but ``running``, parking now, and
        a canary at its read) goes through its queue again, to find itself still parked and
        say so (:meth:`park`); none sends a request."""
        if outage.announced or _now() - outage.started < self._quiet_for:
            return
        outage.announced = True
        self._resume([entry for entry in outage.parked
                      if entry not in (running, outage.canary)])

    def _mark_answered(self, where: Identity) -> None:
        for older in [w for w in self._answered if w[:2] == where[:2] and w != where]:
            del self._answered[older]  # an earlier generation of the same VaultConnection
        self._answered[where] = _now()

    def _resume(self, entries: list[Entry]) -> None:
        for kind, key in entries:
            add = self._resumers.get(kind)
            if add is not None:
                add(key)

    async def _ask(self, connection: VaultConnection) -> Verdict:
        try:
            return await self._probe(connection)
        except Exception as exc:  # a probe that cannot tell must never hold objects back
            self._log.warning("vault probe failed; not holding objects back",
                              error=str(exc) or type(exc).__name__)
            return None

    def _loop(self, probing: Coroutine[None, None, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(probing, name=name)
        self._loops.add(task)
        task.add_done_callback(self._loops.discard)
        return task

    def _stop(self, where: Identity, outage: Outage) -> None:
        if self._down.get(where) is outage:
            del self._down[where]
        task = self._watching.pop(where, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Stop every probe (shutdown); parked objects stay parked."""
        self._closed = True
        tasks = [*self._loops, *self._checking.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watching.clear()


def _now() -> float:
    return asyncio.get_running_loop().time()


def _failure_words(error: BaseException) -> str:
    """How a read failed, in a few words (never the message: it names the path)."""
    if isinstance(error, VaultSealed):
        return "Vault is sealed"
    if isinstance(error, VaultUnavailable):
        return error.transport or f"answered {error.status}"
    return type(error).__name__
