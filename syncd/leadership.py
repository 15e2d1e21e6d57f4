"""Leader election with a ``coordination.k8s.io/v1`` Lease, as controller-runtime does it.

With two replicas only one may write Secrets and restart workloads; otherwise both would act
on every change, and two rollouts could race. The replicas agree through a Lease object: the
holder renews it every ``retry_period`` seconds, and another replica takes it over only when
it has not seen the Lease change for ``lease_duration`` seconds.

The rules are client-go's (``tools/leaderelection``), kept small:

- **Plain GET, create and PUT** with the ``resourceVersion`` read: two replicas racing for the
  same Lease cannot both win, the loser's write is a 409 and it simply tries again later.
- **Expiry is judged by the local clock** from the moment this replica last saw the Lease
  *change* (its holder or renew time), never by comparing ``renewTime`` with our clock: the
  nodes' clocks may disagree, the monotonic clock of one process cannot.
- **The leader gives up** when it has not renewed for ``renew_deadline`` seconds (shorter than
  the lease duration, so it stops before anyone else may start). Losing is final for this
  elector: syncd then stops its work and exits non-zero, as a controller-runtime manager does,
  so the Deployment restarts it as a fresh standby (in-memory state such as "what I wrote
  last" is never carried across a leadership gap).
- **A clean stop releases the Lease** (holder emptied, duration 1 s) so the standby takes over
  at its next retry instead of after a whole lease duration (``ReleaseOnCancel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp
import structlog

from plumbing.kube import JSON, Kube, KubeError, Resource

LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")
LEASE_NAME = "vault-syncd"

State = Literal["starting", "standby", "leader", "lost"]


class LeadershipLost(Exception):
    """This replica was the leader and could not renew its Lease in time."""


@dataclass(frozen=True, kw_only=True)
class LeaseSettings:
    """Where the Lease is and its timings (controller-runtime's defaults)."""

    namespace: str
    identity: str
    name: str = LEASE_NAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0"
            )


def _micro_time() -> str:
    """A ``metav1.MicroTime``, as Lease ``acquireTime``/``renewTime`` are."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, hold and release one Lease; see the module docstring for the rules.

    :meth:`run` returns when leadership is lost (after :attr:`leading` was set) and is
    otherwise cancelled by its owner. :attr:`state` and :attr:`observed_at` are for the
    readiness probe: a standby that can read the Lease is healthy and ready to take over.
    """

    def __init__(self, *, kube: Kube, settings: LeaseSettings) -> None:
        self._kube = kube
        self.settings = settings
        self.state: State = "starting"
        #: Set once this replica holds the Lease; it is never cleared (losing is final).
        self.leading = asyncio.Event()
        #: Monotonic time of the last successful read or write of the Lease (None: never).
        self.observed_at: float | None = None
        #: The holder and renew time last seen, and when they last changed (monotonic).
        self._record: tuple[str, str] | None = None
        self._record_changed_at = 0.0
        self._renewed_at = 0.0
        self._log = structlog.get_logger("leadership").bind(
            lease=f"{settings.namespace}/{settings.name}", replica=settings.identity
        )

    @property
    def path(self) -> str:
        return LEASES.path(namespace=self.settings.namespace, name=self.settings.name)

    async def run(self) -> None:
        """Wait for the Lease, then renew it until a renewal misses the deadline."""
        retry = self.settings.retry_period
        logged_holder: str | None = None
        while not self.leading.is_set():
            if await self._try_acquire_or_renew():
                self.state = "leader"
                self._renewed_at = time.monotonic()
                self.leading.set()
                self._log.info("leader election won: this replica leads")
                break
            if self.state == "starting":
                self.state = "standby"
            holder = self._record[0] if self._record else None
            if holder != logged_holder:
                self._log.info("standby: another replica leads", holder=holder or "nobody")
                logged_holder = holder
            await asyncio.sleep(retry)
        while True:
            await asyncio.sleep(retry)
            if await self._try_acquire_or_renew():
                self._renewed_at = time.monotonic()
                continue
            if time.monotonic() - self._renewed_at >= self.settings.renew_deadline:
                self.state = "lost"
                self._log.error(
                    "leadership lost: the Lease was not renewed in time",
                    renew_deadline=self.settings.renew_deadline,
                )
                return

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        me = self.settings.identity
        now = _micro_time()
        try:
            lease = await self._request("GET", self.path)
        except KubeError as exc:
            if not exc.not_found:
                self._log.warning("lease not read", error=str(exc))
                return False
            return await self._create(now)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log.warning("lease not read", error=str(exc) or type(exc).__name__)
            return False
        self.observed_at = time.monotonic()
        spec: JSON = dict(lease.get("spec") or {})
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._record:
            self._record, self._record_changed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
        expired = time.monotonic() >= self._record_changed_at + duration
        if holder and holder != me and not expired:
            return False
        if holder != me:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(
            holderIdentity=me, renewTime=now,
            leaseDurationSeconds=round(self.settings.lease_duration),
        )
        body = {**lease, "spec": spec}
        try:
            updated = await self._request("PUT", self.path, body=body)
        except KubeError as exc:
            if not exc.conflict:  # a 409: someone else wrote first, look again next time
                self._log.warning("lease not renewed", error=str(exc))
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log.warning("lease not renewed", error=str(exc) or type(exc).__name__)
            return False
        self._remember(updated)
        return True

    async def _create(self, now: str) -> bool:
        body = {
            "apiVersion": LEASES.api_version, "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": {
                "holderIdentity": self.settings.identity,
                "leaseDurationSeconds": round(self.settings.lease_duration),
                "acquireTime": now, "renewTime": now, "leaseTransitions": 0,
            },
        }
        try:
            created = await self._request(
                "POST", LEASES.path(namespace=self.settings.namespace), body=body
            )
        except KubeError as exc:
            if exc.status != 409:  # 409 AlreadyExists: another replica created it first
                self._log.warning("lease not created", error=str(exc))
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log.warning("lease not created", error=str(exc) or type(exc).__name__)
            return False
        self._remember(created)
        return True

    def _remember(self, lease: JSON) -> None:
        spec = lease.get("spec") or {}
        self.observed_at = time.monotonic()
        self._record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""))
        self._record_changed_at = time.monotonic()

    async def _request(self, method: str, path: str, *, body: JSON | None = None) -> JSON:
        # Each attempt must end well within the renew deadline, or a hung connection would
        # keep a leader believing it leads.
        timeout = max(self.settings.retry_period, 1.0)
        return await self._kube.request(method, path, body=body, request_timeout=timeout)

    async def release(self) -> None:
        """Give the Lease up at a clean stop, so that the standby need not wait it out."""
        if self.state != "leader":
            return
        self.state = "lost"
        with contextlib.suppress(KubeError, aiohttp.ClientError, TimeoutError):
            lease = await self._request("GET", self.path)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.settings.identity:
                return
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_time())
            await self._request("PUT", self.path, body={**lease, "spec": spec})
            self._log.info("lease released")

    def ready(self) -> bool:
        """Leading, or a standby that read the Lease within one lease duration."""
        if self.state == "leader":
            return True
        if self.state != "standby" or self.observed_at is None:
            return False
        return time.monotonic() - self.observed_at < self.settings.lease_duration
