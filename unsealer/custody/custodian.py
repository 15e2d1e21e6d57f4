"""What a custodian is, and the one custodian that every storage backend shares.

A *custodian* is one place that holds some, never all, of the unseal shares. The unseal
procedure only needs :class:`Custodian`: fetch the shares (for a pod), store them (at init or
import), describe yourself. Everything else here exists so that a backend (a Kubernetes Secret,
a file, an environment variable) only moves opaque entries, while parsing, age encryption and
"never overwrite shares you did not write" live in one place, :class:`StoredCustodian`.

Errors are :class:`CustodyError`, which names the custodian and is built only from our own
words: never from an entry, a decrypted plaintext or a server body that could hold one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from unsealer.shares import Share, ShareError, wipe_all, zero

log = structlog.get_logger("unsealer.custody")

#: One stored entry: where it sits (``share-2``, ``line 3``), and its bytes (share text or age
#: ciphertext). The bytes are wiped by whoever asked for them.
Entry = tuple[str, bytearray]


class CustodyError(Exception):
    """A custodian could not do what was asked. Never carries share material."""

    def __init__(self, message: str, *, custodian: str) -> None:
        super().__init__(f"custodian {custodian!r}: {message}")
        self.custodian = custodian


class CustodyConflict(CustodyError):
    """The custodian already holds other shares; they were left alone."""


class Custodian(Protocol):
    """One place that holds some of the shares."""

    @property
    def name(self) -> str: ...

    async def fetch(self, *, pod: str | None = None) -> list[Share]:
        """The shares this custodian holds, for unsealing ``pod`` (a peer needs to know which;
        ``None`` when not unsealing, e.g. to check the invariant). The caller wipes them."""
        ...

    async def store(self, shares: Sequence[Share], *, replace: bool = False) -> None:
        """Hold exactly ``shares`` from now on (init and import).

        Storing what is already held succeeds (a retry after a lost reply); holding other
        shares raises :class:`CustodyConflict` unless ``replace``.
        """
        ...

    def describe(self) -> str:
        """One line for people: kind and location, never content."""
        ...


class Backend(Protocol):
    """Where a :class:`StoredCustodian` keeps its entries."""

    writable: bool

    def describe(self) -> str: ...

    async def read_entries(self, *, missing_ok: bool = False) -> list[Entry]:
        """The stored entries. A missing store (no file, no Secret, no variable) is an error,
        unless ``missing_ok`` (before the first write), when it holds nothing."""
        ...

    async def write_entries(self, entries: Sequence[bytearray]) -> None: ...

    async def read_identity(self) -> bytearray | None:
        """The age identity this custodian holds for another one, or ``None``."""
        ...


class Sealer(Protocol):
    """Turns shares into stored entries and back (age encryption, :mod:`.encryption`)."""

    identity_from: str

    def seal(self, share: Share) -> bytearray: ...

    async def open(self, entries: Sequence[Entry], *, custodian: str) -> list[Share]: ...


class StoredCustodian:
    """A custodian whose shares sit in a :class:`Backend`, in plain text or age-encrypted."""

    def __init__(
        self, *, name: str, kind: str, backend: Backend, sealer: Sealer | None = None
    ) -> None:
        self._name = name
        self.kind = kind
        self.backend = backend
        self.sealer = sealer

    @property
    def name(self) -> str:
        return self._name

    @property
    def identity_from(self) -> str | None:
        """The custodian holding the identity that decrypts these shares, if encrypted."""
        return self.sealer.identity_from if self.sealer else None

    def describe(self) -> str:
        sealed = f", age-encrypted (identity at {self.identity_from!r})" if self.sealer else ""
        return f"{self.kind} {self.backend.describe()}{sealed}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}: {self.describe()}>"

    async def fetch(self, *, pod: str | None = None) -> list[Share]:
        entries = await self.backend.read_entries(missing_ok=False)
        try:
            shares = await self._open(entries)
        finally:
            wipe_all_entries(entries)
        log.debug("custody.fetched", custodian=self._name, count=len(shares), pod=pod)
        return shares

    async def store(self, shares: Sequence[Share], *, replace: bool = False) -> None:
        if not self.backend.writable:
            raise CustodyError(f"a {self.kind} custodian is read-only", custodian=self._name)
        existing_entries = await self.backend.read_entries(missing_ok=True)
        try:
            if existing_entries and await self._holds_already(
                existing_entries, shares, replace=replace
            ):
                log.info("custody.already_stored", custodian=self._name, count=len(shares))
                return
        finally:
            wipe_all_entries(existing_entries)
        entries = [self._seal(share) for share in shares]
        try:
            await self.backend.write_entries(entries)
        finally:
            for entry in entries:
                zero(entry)
        log.info("custody.stored", custodian=self._name, count=len(shares), replaced=replace)

    async def _holds_already(
        self, entries: list[Entry], shares: Sequence[Share], *, replace: bool
    ) -> bool:
        """True if exactly ``shares`` are held; raises on other shares unless ``replace``."""
        try:
            held = await self._open(entries)
        except CustodyError:
            held = None  # unreadable (e.g. the identity holder is away): not provably ours
        try:
            if held is not None and _same_set(held, shares):
                return True
        finally:
            wipe_all(held or [])
        if not replace:
            raise CustodyConflict(
                f"already holds {len(entries)} other share entries; refusing to overwrite them",
                custodian=self._name,
            )
        log.warning("custody.replacing", custodian=self._name, previous=len(entries))
        return False

    async def _open(self, entries: Sequence[Entry]) -> list[Share]:
        if self.sealer is not None:
            return await self.sealer.open(entries, custodian=self._name)
        shares: list[Share] = []
        try:
            for slot, entry in entries:
                shares.append(Share.parse(entry, origin=f"{self._name}/{slot}"))
        except ShareError as exc:
            wipe_all(shares)
            raise CustodyError(str(exc), custodian=self._name) from None
        return shares

    def _seal(self, share: Share) -> bytearray:
        if self.sealer is not None:
            return self.sealer.seal(share)
        return bytearray(share.base64().encode("ascii"))


def _same_set(held: Sequence[Share], wanted: Sequence[Share]) -> bool:
    if len(held) != len(wanted):
        return False
    remaining = list(held)
    for share in wanted:
        for index, candidate in enumerate(remaining):
            if candidate == share:
                del remaining[index]
                break
        else:
            return False
    return True


def wipe_all_entries(entries: Sequence[Entry]) -> None:
    for _slot, entry in entries:
        zero(entry)
