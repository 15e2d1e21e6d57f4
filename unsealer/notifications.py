"""Notifications: a person learns that Vault sealed, was unsealed, or could not be unsealed.

An unsealer that works silently is only half of what a person wants after a power cut: they
want to know it happened, and above all when it could *not* unseal (the reason
lrstanley/vault-unseal exists). So each pod that is seen sealed, then unsealed, or whose unseal
fails (once per reason, not on every retry), becomes a notice, posted to webhook targets:

- a generic JSON target gets ``{"source", "event", "namespace", "pod", "reason", "message",
  "time"}``;
- a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, ...; written
  ``slack:https://...``) gets ``{"text": ...}``.

Targets come from ``--notify`` (``UNSEALER_NOTIFY``), which the manifests fill from a Secret:
a webhook URL carries its own credential, so a URL is never logged or repeated in an error
(only its scheme and host are). A notice says which pod and what happened, with the message of
the matching Event; never a share, a token or a fingerprint (the Events' rule).

Sending never holds up an unseal: :meth:`Notifier.notify` only queues (a bounded queue per
target; when one is full its oldest notice is dropped, with a log line), and one background
task delivers, each target in order and on its own, retried with capped, jittered backoff on
errors, 5xx and 429. A target that hangs costs its own timeout per try, not an unseal, and not
the other targets' notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import structlog

Event = Literal["sealed", "unsealed", "unseal_failed"]
_SLACK = "slack:"


@dataclass(frozen=True)
class Target:
    """One webhook: where (never shown), in which format, and how to name it in logs."""

    url: str = field(repr=False)
    slack: bool = False

    @property
    def label(self) -> str:
        """Scheme and host only: a webhook's path and query are its secret."""
        parts = urlsplit(self.url)
        return f"{'slack:' if self.slack else ''}{parts.scheme}://{parts.hostname}"


def parse_targets(text: str) -> tuple[Target, ...]:
    """``URL[,URL...]`` (commas or whitespace), each ``https://...`` or ``slack:https://...``.

    Raises ValueError naming a bad entry by its position, never by its text.
    """
    targets = []
    for index, entry in enumerate(e for e in re.split(r"[,\s]+", text.strip()) if e):
        slack = entry.startswith(_SLACK)
        url = entry.removeprefix(_SLACK)
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"entry {index + 1} is not an http(s) URL (optionally prefixed"
                             " slack:)")
        targets.append(Target(url=url, slack=slack))
    return tuple(targets)


@dataclass(frozen=True)
class Notice:
    event: Event
    namespace: str
    pod: str
    reason: str
    message: str
    time: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"))

    def body(self, *, slack: bool) -> dict[str, Any]:
        if slack:
            return {"text": self.text()}
        return {"source": "vault-unsealer", "event": self.event, "namespace": self.namespace,
                "pod": self.pod, "reason": self.reason, "message": self.message,
                "time": self.time}

    def text(self) -> str:
        where = f"{self.namespace}/{self.pod}"
        if self.event == "sealed":
            return f":lock: Vault pod {where} is sealed; unsealing. {self.message}"
        if self.event == "unsealed":
            return f":unlock: Vault pod {where} unsealed. {self.message}"
        return f":warning: Vault pod {where} could not be unsealed ({self.reason}): {self.message}"


class Notifier:
    """Queues notices and delivers them to every target in order: one queue and one delivering
    loop per target (all run by :meth:`run`), so a target that hangs delays only itself."""

    def __init__(
        self, *, targets: Sequence[Target], session: aiohttp.ClientSession, tries: int = 5,
        backoff_seconds: float = 1.0, backoff_cap_seconds: float = 60.0,
        timeout_seconds: float = 10.0, queue_size: int = 100,
    ) -> None:
        self._targets = tuple(targets)
        self._session = session
        self._tries = tries
        self._backoff = backoff_seconds
        self._cap = backoff_cap_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._queues: list[asyncio.Queue[Notice]] = [
            asyncio.Queue(maxsize=queue_size) for _ in self._targets]
        self._log = structlog.get_logger("unsealer")

    def notify(self, notice: Notice) -> None:
        """Queue ``notice`` for every target; returns at once."""
        for target, queue in zip(self._targets, self._queues, strict=True):
            if queue.full():
                dropped = queue.get_nowait()
                queue.task_done()
                self._log.warning("notification dropped: queue full", target=target.label,
                                  pod=dropped.pod, notice=dropped.event)
            queue.put_nowait(notice)

    async def run(self) -> None:
        """Deliver queued notices until cancelled."""
        await asyncio.gather(*(self._serve(target, queue)
                               for target, queue in zip(self._targets, self._queues, strict=True)))
        await asyncio.Event().wait()  # no targets: idle, like a loop that has nothing to send

    async def drain(self, *, grace: float) -> None:
        """Wait up to ``grace`` seconds for the queued notices to go (at shutdown)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), grace)

    async def _serve(self, target: Target, queue: asyncio.Queue[Notice]) -> None:
        while True:
            notice = await queue.get()
            try:
                await self._deliver(target, notice)
            finally:
                queue.task_done()

    async def _deliver(self, target: Target, notice: Notice) -> None:
        body = notice.body(slack=target.slack)
        problem = ""
        for attempt in range(self._tries):
            if attempt:
                delay = min(self._cap, self._backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter
            try:
                async with self._session.post(target.url, json=body,
                                              timeout=self._timeout) as response:
                    if response.status < 300:
                        self._log.debug("notification sent", target=target.label,
                                        notice=notice.event, pod=notice.pod)
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # the target refuses it: trying again changes nothing
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
        self._log.warning("notification not delivered", target=target.label,
                          notice=notice.event, pod=notice.pod, problem=problem)
