"""The unseal procedure for one Vault pod: the sys/unseal state machine, driven safely.

Vault pools unseal shares in memory per node, from any caller, and only checks them once the
threshold is reached. That shapes every step here:

1. Read ``sys/seal-status``. Uninitialised: report and wait (initialising is ``unsealer init``,
   a decision for a person). Unsealed: nothing to do. A threshold or share count other than
   the custody config records: refused, not a single share sent (a server that asks for more
   shares than Vault needs is not our Vault). The caller has already made sure the pod is
   one of the StatefulSet's, and the node only answers after TLS proved the pod's name.
2. Fetch from every local custodian at once and stop as soon as the threshold of distinct
   shares is in hand: the slow or dead custodian does not hold up the ones that answered. A
   remote one (a peer, which releases its shares over the network for this pod) is asked only
   when what it declares can complete the set: while another custodian is down, each retry
   would otherwise have it release shares that cannot be used (and spend its rate limit).
   Without the threshold, stop here and touch nothing.
3. With the threshold in hand, progress that is not ours (a nonce we did not start) is reset.
   Partial progress never expires in Vault (hashicorp/vault#12445): somebody's forgotten
   half-unseal, or a stale share from an old Vault, would otherwise poison our attempt. An
   unsealer that cannot finish never resets: the progress may be another unsealer's, one
   that can (a peer holding some of our shares runs its own attempts too).
4. Submit one share at a time. A wrong share shows only at the threshold, as a 400 (or a 500
   before Vault 1.13, which looks retryable and is not) with progress back to 0.
5. After a wrong set, fetch from every custodian, find the odd share out by combining subsets
   locally (:func:`unsealer.shares.check_consistency`), report which custodian holds it, and
   try again with consistent shares — a bounded number of times, and only on a server whose
   identity is verified: over plain http an attempt never sends more than the threshold.
   Never a hot loop: the caller backs off between attempts, and a pod that took shares
   ``share_attempt_budget`` times without unsealing gets none for a while.

Every share is wiped when the attempt ends, whatever the outcome; no share, nor anything
derived from one but its keyed fingerprint, reaches a log line, a span or an exception.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from plumbing.telemetry import tracer
from unsealer.custody import Custodian, CustodyError
from unsealer.shares import FingerprintKey, Share, check_consistency, wipe_all
from unsealer.vault_sys import SealStatus, VaultNode, VaultSysError

Outcome = Literal[
    "Unsealed", "AlreadyUnsealed", "Uninitialized", "NotEnoughShares", "WrongShares",
    "VaultUnreachable", "VaultMismatch", "BudgetExhausted",
]


@dataclass(frozen=True)
class Attempt:
    """How one attempt ended, in words a person can act on (never share material)."""

    outcome: Outcome
    detail: str
    #: Custodians whose shares were submitted.
    custodians: tuple[str, ...] = ()
    #: Custodians that could not be read, and the shares (custodian/slot) found inconsistent.
    unreachable: tuple[str, ...] = ()
    bad_shares: tuple[str, ...] = ()
    status: SealStatus | None = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        return self.outcome in ("Unsealed", "AlreadyUnsealed")


class UnsealFailed(Exception):
    """The attempt did not unseal; the queue retries with backoff. Carries the Attempt."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(f"{attempt.outcome}: {attempt.detail}")
        self.attempt = attempt


class _Gathered:
    """Distinct shares fetched so far (by fingerprint), and who answered."""

    def __init__(self, key: FingerprintKey) -> None:
        self._key = key
        self.shares: list[Share] = []
        self._seen: set[str] = set()
        self.answered: list[str] = []
        self.unreachable: list[str] = []
        #: Remote custodians not asked: their shares could not have completed the set.
        self.not_asked: list[str] = []

    def add(self, custodian: str, shares: Sequence[Share]) -> None:
        self.answered.append(custodian)
        for share in shares:
            fingerprint = share.fingerprint(self._key)
            if fingerprint in self._seen:
                share.wipe()  # the same share from two places: one point for Vault
                continue
            self._seen.add(fingerprint)
            self.shares.append(share)

    def wipe(self) -> None:
        wipe_all(self.shares)
        self.shares.clear()


def _custodian_of(share: Share) -> str:
    return share.origin.split("/", 1)[0]


@dataclass(frozen=True)
class VaultShape:
    """The threshold and share count ``init`` recorded in the custody config: the pod must
    report exactly these before it gets a share (``shares`` None: not recorded, not checked)."""

    threshold: int
    shares: int | None = None

    def mismatch(self, pod: str, status: SealStatus) -> str | None:
        if status.threshold == self.threshold and self.shares in (None, status.shares):
            return None
        recorded = f"{self.threshold} of {self.shares}" if self.shares else f"{self.threshold}"
        return (f"{pod} reports threshold {status.threshold} of {status.shares} shares, but the"
                f" custody config records {recorded}: no share is sent to it")


class ShareBudget:
    """Per pod: the attempts that sent shares without unsealing, within a sliding window."""

    def __init__(self, *, attempts: int, seconds: float) -> None:
        self._attempts = attempts
        self._seconds = seconds
        self._spent: dict[str, tuple[str, list[float]]] = {}

    def exhausted(self, pod: str, instance: str) -> str | None:
        """Why ``pod`` gets no shares now, or None. A new pod instance starts afresh."""
        owner, spent = self._spent.get(pod, (instance, []))
        if owner != instance:
            self._spent.pop(pod, None)
            return None
        now = time.monotonic()
        spent[:] = [t for t in spent if now - t < self._seconds]
        if len(spent) < self._attempts:
            return None
        wait = self._seconds - (now - spent[0])
        return (f"{pod}: {len(spent)} attempts sent shares without unsealing it in the last"
                f" {self._seconds:.0f}s; no more shares to it for {wait:.0f}s (or until the pod"
                " is replaced)")

    def spend(self, pod: str, instance: str) -> None:
        owner, spent = self._spent.get(pod, (instance, []))
        self._spent[pod] = (instance, [*spent, time.monotonic()] if owner == instance else [])

    def clear(self, pod: str) -> None:
        self._spent.pop(pod, None)


class Unsealer:
    """Unseal pods with shares from ``custodians``; one instance serves every pod.

    ``shape`` is what Vault must report before a share leaves; ``share_attempt_budget``
    attempts with shares per pod per ``share_budget_seconds`` at most. A node whose identity
    is not verified (plain http) gets at most the threshold of shares per attempt: no
    odd-share search, which would hand it more.
    """

    def __init__(
        self,
        *,
        custodians: Mapping[str, Custodian],
        fingerprint_key: FingerprintKey,
        shape: VaultShape,
        max_retry_subsets: int = 8,
        share_attempt_budget: int = 5,
        share_budget_seconds: float = 3600.0,
        remote: Mapping[str, int | None] | None = None,
    ) -> None:
        self._custodians = dict(custodians)
        #: Custodians that release over the network, and the shares each declares (None:
        #: not declared, so it may complete any set).
        self._remote = dict(remote or {})
        self._key = fingerprint_key
        self._shape = shape
        self._max_retry_subsets = max_retry_subsets
        self._budget = ShareBudget(attempts=share_attempt_budget, seconds=share_budget_seconds)
        self._nonces: dict[str, str] = {}
        self._log = structlog.get_logger("unsealer")

    async def unseal(self, node: VaultNode, *, pod: str, instance: str = "") -> Attempt:
        """One attempt on one pod (``instance``: its uid); see the module docstring."""
        log = self._log.bind(pod=pod)
        try:
            status = await node.seal_status()
        except VaultSysError as exc:
            return Attempt("VaultUnreachable", str(exc))
        if not status.initialized:
            return Attempt("Uninitialized", f"{pod}: Vault is not initialised; run unsealer"
                           " init (or vault operator init) first", status=status)
        if not status.sealed:
            self._budget.clear(pod)
            return Attempt("AlreadyUnsealed", f"{pod} is unsealed", status=status)
        refused = self._refusal(pod, status, instance=instance)
        if refused is not None:
            return refused
        threshold = self._shape.threshold
        gathered = _Gathered(self._key)
        try:
            await self._gather(gathered, pod=pod, enough=threshold)
            if len(gathered.shares) < threshold:
                # Not enough to finish: leave any progress alone, it may be somebody's who can.
                idle = (f"; not asked, as theirs could not complete the set:"
                        f" {', '.join(gathered.not_asked)}" if gathered.not_asked else "")
                return Attempt(
                    "NotEnoughShares",
                    f"{len(gathered.shares)} of the {threshold} shares needed could be"
                    f" fetched; unreachable: {', '.join(gathered.unreachable) or 'none'}{idle}",
                    custodians=tuple(gathered.answered),
                    unreachable=tuple(gathered.unreachable), status=status,
                )
            # Gathering takes time: look again before touching the seal.
            try:
                status = await node.seal_status()
                if not status.sealed:
                    return Attempt("AlreadyUnsealed", f"{pod} is unsealed", status=status)
                refused = self._refusal(pod, status, instance=instance)
                if refused is not None:
                    return refused
                if status.progress and status.nonce != self._nonces.get(pod):
                    log.info("resetting progress that is not ours", progress=status.progress,
                             threshold=status.threshold)
                    status = await node.reset()
            except VaultSysError as exc:
                return Attempt("VaultUnreachable", str(exc))
            self._budget.spend(pod, instance)
            attempt = await self._submit(node, pod, gathered.shares[:threshold],
                                         threshold=threshold)
            if attempt.outcome == "Unsealed":
                self._budget.clear(pod)
            if attempt.outcome != "WrongShares":
                return _with_unreachable(attempt, gathered.unreachable)
            if not node.verified:
                # More shares would go to a server that has not proved who it is.
                return _with_unreachable(Attempt(
                    "WrongShares", f"{attempt.detail}; the odd share out is looked for only on"
                    " a Vault whose identity is verified (https), never over plain http",
                    custodians=attempt.custodians, status=attempt.status,
                ), gathered.unreachable)
            log.warning("wrong share set; looking for the odd one out")
            return _with_unreachable(
                await self._recover(node, pod, gathered, threshold=threshold),
                gathered.unreachable,
            )
        finally:
            gathered.wipe()

    def _refusal(self, pod: str, status: SealStatus, *, instance: str) -> Attempt | None:
        mismatch = self._shape.mismatch(pod, status)
        if mismatch is not None:
            return Attempt("VaultMismatch", mismatch, status=status)
        exhausted = self._budget.exhausted(pod, instance)
        if exhausted is not None:
            return Attempt("BudgetExhausted", exhausted, status=status)
        return None

    async def _gather(self, gathered: _Gathered, *, pod: str, enough: int | None) -> None:
        """Fetch from the custodians not asked yet, local ones first; stop at ``enough``."""
        await self._gather_from(gathered, [n for n in self._custodians if n not in self._remote],
                                pod=pod, enough=enough)
        remote = [n for n in self._remote if n in self._custodians]
        if enough is not None and len(gathered.shares) < enough:
            declared = [self._remote[n] for n in remote]
            if None not in declared and len(gathered.shares) + sum(
                    d or 0 for d in declared) < enough:
                gathered.not_asked.extend(remote)
                return
        await self._gather_from(gathered, remote, pod=pod, enough=enough)

    async def _gather_from(self, gathered: _Gathered, names: Sequence[str], *, pod: str,
                           enough: int | None) -> None:
        """Fetch concurrently from ``names`` not asked yet; stop at ``enough`` shares."""
        pending = {
            asyncio.create_task(self._fetch(name, self._custodians[name], pod),
                                name=f"fetch {name}"): name
            for name in names
            if name not in gathered.answered and name not in gathered.unreachable
        }
        try:
            while pending and (enough is None or len(gathered.shares) < enough):
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    name = pending.pop(task)
                    shares = task.result()
                    if shares is None:
                        gathered.unreachable.append(name)
                    else:
                        gathered.add(name, shares)
        finally:
            for task in pending:
                task.cancel()
            # A fetch may finish before it sees the cancel: wipe what it brought anyway.
            for late in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(late, list):
                    wipe_all(late)

    async def _fetch(self, name: str, custodian: Custodian, pod: str) -> list[Share] | None:
        with tracer("unsealer").start_as_current_span(
            "custody.fetch", attributes={"unsealer.custodian": name, "k8s.pod.name": pod}
        ) as span:
            try:
                shares = await custodian.fetch(pod=pod)
            except CustodyError as exc:
                span.set_attribute("unsealer.error", str(exc))
                self._log.warning("custodian unreachable", custodian=name, error=str(exc))
                return None
            span.set_attribute("unsealer.shares", len(shares))
            return shares

    async def _submit(
        self, node: VaultNode, pod: str, shares: Sequence[Share], *, threshold: int
    ) -> Attempt:
        custodians = tuple(dict.fromkeys(_custodian_of(s) for s in shares))
        status: SealStatus | None = None
        for index, share in enumerate(shares, start=1):
            with tracer("unsealer").start_as_current_span(
                "vault.unseal.submit",
                attributes={"k8s.pod.name": pod, "unsealer.share.index": index,
                            "unsealer.share.origin": share.origin,
                            "unsealer.share.fingerprint": share.fingerprint(self._key)},
            ) as span:
                try:
                    status = await node.submit(share.hex())
                except VaultSysError as exc:
                    span.set_attribute("http.response.status_code", exc.status)
                    if exc.status in (400, 500) and index == len(shares):
                        # At the threshold Vault combined the pool and could not decrypt its
                        # keyring with the result: a wrong share somewhere in this set. (500
                        # is Vault 1.3-1.12's answer to the same thing.)
                        return Attempt("WrongShares", str(exc), custodians=custodians)
                    if exc.status == 0:
                        return Attempt("VaultUnreachable", str(exc), custodians=custodians)
                    return Attempt("WrongShares", str(exc), custodians=custodians)
                span.set_attribute("unsealer.progress", status.progress)
            mismatch = self._shape.mismatch(pod, status) if status.sealed else None
            if mismatch is not None:
                return Attempt("VaultMismatch", mismatch, custodians=custodians, status=status)
            if index == 1 and status.nonce:
                self._nonces[pod] = status.nonce
            if not status.sealed:
                self._nonces.pop(pod, None)
                return Attempt("Unsealed", f"{pod} unsealed with shares from"
                               f" {', '.join(custodians)}", custodians=custodians, status=status)
        if status is not None and status.progress == 0:
            return Attempt("WrongShares", f"{pod}: progress went back to 0 at the threshold",
                           custodians=custodians, status=status)
        return Attempt("WrongShares", f"{pod}: still sealed after {threshold} shares",
                       custodians=custodians, status=status)

    async def _recover(
        self, node: VaultNode, pod: str, gathered: _Gathered, *, threshold: int
    ) -> Attempt:
        await self._gather(gathered, pod=pod, enough=None)
        report = await asyncio.to_thread(check_consistency, gathered.shares, threshold=threshold)
        bad = report.inconsistent
        if bad:
            self._log.warning("inconsistent shares", inconsistent=list(bad),
                              custodians=sorted({b.split("/", 1)[0] for b in bad}))
        candidates: list[Sequence[Share]]
        good = [s for s in gathered.shares if s.origin not in bad]
        if report.conclusive and len(good) >= threshold:
            candidates = [good[:threshold]]
        else:
            candidates = list(itertools.islice(
                itertools.combinations(good, threshold), self._max_retry_subsets
            ))
        last = Attempt("WrongShares", f"{pod}: no consistent set of {threshold} shares",
                       bad_shares=tuple(bad))
        for subset in candidates:
            try:
                await node.reset()
            except VaultSysError as exc:
                return Attempt("VaultUnreachable", str(exc), bad_shares=tuple(bad))
            attempt = await self._submit(node, pod, subset, threshold=threshold)
            last = Attempt(attempt.outcome, attempt.detail, custodians=attempt.custodians,
                           bad_shares=tuple(bad), status=attempt.status)
            if attempt.outcome != "WrongShares":
                break
        return last


def _with_unreachable(attempt: Attempt, unreachable: Sequence[str]) -> Attempt:
    return Attempt(attempt.outcome, attempt.detail, custodians=attempt.custodians,
                   unreachable=tuple(unreachable), bad_shares=attempt.bad_shares,
                   status=attempt.status)
