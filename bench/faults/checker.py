"""The invariants, checked from outside: only the API server and Vault are read.

Never syncd's logs or status: a controller that says it is fine proves nothing. What a user
relies on is visible in the two servers:

- **no Secret blanked, deleted or sent back**: a watch on the Secrets records every DELETED
  event of a managed Secret, every version without its key or with an empty value, and every
  value older than one it already held (each value the driver writes carries its generation,
  :class:`Ledger`);
- **nothing older than what was readable**: when a fault ends, Vault is read for every secret;
  once things settle, each Secret holds that version or a newer one;
- **every rotation delivered**: each write the driver made is in its Secret by the end (a later
  write to the same secret delivers the earlier one too);
- **one restart per change**: a Deployment's generation moves once for each change of the
  Secret it restarts on (rolloutRestartTargets), never twice;
- **no hot loop**: syncd's requests per second to each server while the fault holds (the
  servers' own counters), reported and bounded by the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

KEY = "VALUE"


@dataclass
class Ledger:
    """Every value the driver wrote to Vault: its Secret and its generation (1, 2, ...)."""

    values: dict[str, tuple[str, int]] = field(default_factory=dict)
    generations: Counter[str] = field(default_factory=Counter)
    #: (Secret name, generation, when Vault answered) of each answered write, in order.
    written: list[tuple[str, int, float]] = field(default_factory=list)

    def new_value(self, name: str) -> str:
        """A fresh, unguessable value for ``name`` (one generation up); also a secret for the
        leak sweep."""
        self.generations[name] += 1
        value = f"rot-{secrets.token_hex(8)}"
        self.values[value] = (name, self.generations[name])
        return value

    def answered(self, value: str) -> None:
        name, generation = self.values[value]
        self.written.append((name, generation, time.monotonic()))

    def generation(self, value: str | None) -> int:
        """0 for a value the driver never wrote; -1 for none at all."""
        if value is None:
            return -1
        return self.values.get(value, ("", 0))[1]


def _value(obj: Mapping[str, Any]) -> str | None:
    encoded = (obj.get("data") or {}).get(KEY)
    return base64.b64decode(encoded).decode() if encoded else None


@dataclass
class Observation:
    value: str | None
    generation: int
    at: float


class Checker:
    """Follows the managed Secrets of ``namespace`` through the API server and reads Vault.

    ``paths`` maps each managed Secret to its KV v2 path under ``mount``; ``kube_headers`` and
    ``vault_token`` are the reader's credentials (an admin's: the checker is the auditor).
    """

    def __init__(self, *, session: aiohttp.ClientSession, kube_url: str, namespace: str,
                 vault_address: str, vault_token: str, paths: Mapping[str, str],
                 ledger: Ledger, mount: str = "secret",
                 kube_headers: Mapping[str, str] | None = None) -> None:
        self._session = session
        self._kube = kube_url
        self._namespace = namespace
        self._vault = vault_address
        self._vault_headers = {"X-Vault-Token": vault_token}
        self._kube_headers = dict(kube_headers or {})
        self._mount = mount
        self.paths = dict(paths)
        self.ledger = ledger
        self.held: dict[str, Observation] = {}
        self.changes: Counter[str] = Counter()
        #: (when, what) of every violation the watch saw, in order.
        self.violations: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._listed = asyncio.Event()
        self._news = asyncio.Event()

    # --- the Secrets watch ----------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="checker-secrets")
        await asyncio.wait_for(self._listed.wait(), 30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _violation(self, text: str) -> None:
        self.violations.append((time.monotonic(), text))

    def _see(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        name = obj["metadata"]["name"]
        if name not in self.paths:
            return
        before = self.held.get(name)
        if deleted:
            self._violation(f"{name}: Secret deleted")
            self.held.pop(name, None)
            return
        value = _value(obj)
        generation = self.ledger.generation(value)
        if value is None:
            self._violation(f"{name}: Secret blanked (no {KEY})")
        elif before is not None and generation < before.generation:
            self._violation(f"{name}: went back from generation {before.generation} to"
                            f" {generation}")
        if before is None or before.value != value:
            if before is not None:
                self.changes[name] += 1
            self.held[name] = Observation(value, generation, time.monotonic())
            self._news.set()

    async def _follow(self) -> None:
        path = f"{self._kube}/api/v1/namespaces/{self._namespace}/secrets"
        while True:
            try:
                async with self._session.get(path, headers=self._kube_headers) as response:
                    response.raise_for_status()
                    listing = await response.json()
                listed = {item["metadata"]["name"] for item in listing.get("items") or []}
                for name in list(self.held):
                    if name not in listed:  # deleted while the watch was down
                        self._see({"metadata": {"name": name}}, deleted=True)
                for item in listing.get("items") or []:
                    self._see(item)
                self._listed.set()
                version = listing["metadata"]["resourceVersion"]
                while True:
                    url = (f"{path}?watch=true&allowWatchBookmarks=true"
                           f"&resourceVersion={version}&timeoutSeconds=600")
                    async with self._session.get(url, headers=self._kube_headers) as response:
                        response.raise_for_status()
                        async for line in response.content:
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            if event["type"] == "ERROR":
                                raise _Relist
                            version = event["object"]["metadata"]["resourceVersion"]
                            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                                self._see(event["object"], deleted=event["type"] == "DELETED")
            except (TimeoutError, _Relist, aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)  # the API server is away, or said 410: list again

    async def wait(self, predicate: Callable[[], bool], *, deadline: float) -> bool:
        """Wait until ``predicate()`` holds after a Secret changed; False after ``deadline``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                while not predicate():
                    self._news.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):  # a re-list sets nothing new
                            await self._news.wait()
                return True
        return predicate()

    # --- Vault ----------------------------------------------------------------------------

    async def readable(self, *, concurrency: int = 16) -> dict[str, int]:
        """The generation Vault serves now for each managed Secret (a read that fails: left
        out, nothing was readable)."""
        found: dict[str, int] = {}
        pending = list(self.paths.items())

        async def reader() -> None:
            while pending:
                name, path = pending.pop()
                url = f"{self._vault}/v1/{self._mount}/data/{path}"
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with self._session.get(url, headers=self._vault_headers,
                                                 timeout=aiohttp.ClientTimeout(total=10)) as r:
                        if r.status == 200:
                            data = ((await r.json()).get("data") or {}).get("data") or {}
                            found[name] = self.ledger.generation(data.get(KEY))

        await asyncio.gather(*(reader() for _ in range(concurrency)))
        return found

    # --- the verdicts ---------------------------------------------------------------------

    def behind(self, readable: Mapping[str, int]) -> list[str]:
        """Secrets holding less than what Vault served when the fault ended."""
        return sorted(name for name, generation in readable.items()
                      if self.held.get(name, Observation(None, -1, 0)).generation < generation)

    def undelivered(self, writes: Iterable[tuple[str, int, float]]) -> list[str]:
        """The writes (name, generation) whose Secret holds an older generation."""
        return [f"{name}@{generation}" for name, generation, _ in writes
                if self.held.get(name, Observation(None, -1, 0)).generation < generation]

    async def generations(self, deployments: Iterable[str]) -> dict[str, int]:
        """``metadata.generation`` of each Deployment (each restart moves it by one)."""
        found = {}
        for name in deployments:
            url = f"{self._kube}/apis/apps/v1/namespaces/{self._namespace}/deployments/{name}"
            async with self._session.get(url, headers=self._kube_headers) as response:
                response.raise_for_status()
                found[name] = int((await response.json())["metadata"]["generation"])
        return found


def restart_violations(*, before: Mapping[str, int], after: Mapping[str, int],
                       changes: Mapping[str, int], secret_of: Mapping[str, str]) -> list[str]:
    """A Deployment restarted more often than its Secret changed, or not at all after one."""
    found = []
    for deployment, secret in secret_of.items():
        restarts = after[deployment] - before[deployment]
        changed = changes.get(secret, 0)
        if restarts > changed:
            found.append(f"{deployment}: {restarts} restarts for {changed} change(s) of {secret}")
        elif changed and not restarts:
            found.append(f"{deployment}: not restarted after {changed} change(s) of {secret}")
    return found


class _Relist(Exception):
    """The watch said ERROR (410 Expired): list again."""


@dataclass
class RateSampler:
    """syncd's requests per second to each server, from the servers' counters, sampled each
    ``interval`` while armed. The figure is the highest mean over ``window`` seconds: a relist
    after a 410 is a burst of a second, a hot loop lasts."""

    counts: Callable[[], Awaitable[tuple[int, int]]]  #: (Kubernetes, Vault) totals so far
    interval: float = 1.0
    window: float = 5.0
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def arm(self) -> None:
        self.samples = []
        self._task = asyncio.create_task(self._sample(), name="rate-sampler")

    async def disarm(self) -> dict[str, float]:
        """The highest rate per server, requests per second, since :meth:`arm`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            kube, vault = await self.counts()
            self.samples.append((time.monotonic(), kube, vault))
        return peak_rates(self.samples, window=self.window)

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                kube, vault = await self.counts()
                self.samples.append((time.monotonic(), kube, vault))
            await asyncio.sleep(self.interval)


def peak_rates(samples: list[tuple[float, int, int]], *, window: float) -> dict[str, float]:
    """The highest mean rate over ``window`` seconds in (when, Kubernetes total, Vault total)
    samples; over all of them if they span less."""
    peak = {"kube": 0.0, "vault": 0.0}
    if len(samples) < 2:
        return peak
    spans = [(start, next((i for i in range(start + 1, len(samples))
                           if samples[i][0] - samples[start][0] >= window), None))
             for start in range(len(samples))]
    pairs = [(a, b) for a, b in spans if b is not None] or [(0, len(samples) - 1)]
    for start, end in pairs:
        elapsed = max(samples[end][0] - samples[start][0], 1e-3)
        for index, server in enumerate(("kube", "vault"), start=1):
            rate = (samples[end][index] - samples[start][index]) / elapsed
            peak[server] = max(peak[server], rate)
    return {server: round(rate, 1) for server, rate in peak.items()}


def vault_syncd_requests(snapshot: Mapping[str, int]) -> int:
    """Requests in a Vault counter snapshot (``{"GET /v1/...": n}``) that syncd made: all but
    the driver's writes and unseal calls, and the checker's reads happen outside the window."""
    return sum(n for key, n in snapshot.items()
               if not key.startswith(("POST /v1/secret/data/", "PUT /v1/sys/unseal")))


def rss_slope(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return None
    slope = sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread
    return round(slope * 60, 3)
