"""Parsed specs, kept while nothing they were parsed from has changed.

An unchanged refresh used to re-parse its VaultStaticSecret, with its SecretTransformations
folded in, and its VaultAuth (with its VaultAuthGlobal) and VaultConnection: about 15 % of
syncd's CPU per refresh, for a result that only changes when one of those objects does.

An entry remembers the version (uid and resourceVersion) of the object it was parsed from and
of every object the parse looked up through the ``lookup`` it was handed, an absent one
included. It is used again only while every one of them is still at that version: any edit,
deletion, recreation or newly created referent makes the next call parse again. The parse
must therefore read nothing but its object and what it looks up; an object without a uid or
resourceVersion (a hand-made one) is never cached. Failures are not cached: an invalid spec
is parsed, and reported, every time, as before.

Entries are keyed by the caller's ``slot`` (the reconciled object's key, say), and dropped
with :meth:`SpecCache.drop` when that object is forgotten, or by :meth:`SpecCache.prune_gone`
for referents (VaultAuths, VaultConnections) whose deletion nobody is told of.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from plumbing.kube import JSON

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

Lookup = Callable[[str, str], JSON | None]
#: uid and resourceVersion; None for an absent object.
Version = tuple[str, str] | None


#: Entries a cache may hold before its first sweep for deleted objects.
_SWEEP_FLOOR = 16


class _Unversioned(Exception):
    """An object without uid or resourceVersion: its parse cannot be validated later."""


def _version(obj: JSON | None) -> Version:
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if not uid or not rv:
        raise _Unversioned
    return (uid, rv)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    version: Version
    #: (namespace, name) of each object looked up -> its version then.
    reads: tuple[tuple[tuple[str, str], Version], ...]
    value: T


class SpecCache(Generic[K]):
    """Parse results by slot, valid while their inputs keep their versions."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry[Any]] = {}
        self._sweep_above = _SWEEP_FLOOR

    def __len__(self) -> int:
        return len(self._entries)

    def parsed(
        self, slot: K, obj: JSON, *, parse: Callable[[JSON, Lookup], T], lookup: Lookup
    ) -> T:
        """``parse(obj, lookup)``, or its result of last time if nothing it read has changed.

        Exceptions of ``parse`` propagate, and leave no entry.
        """
        try:
            version = _version(obj)
        except _Unversioned:
            return parse(obj, lookup)
        entry = self._entries.get(slot)
        if entry is not None and entry.version == version and self._unchanged(entry, lookup):
            value: T = entry.value
            return value
        reads: dict[tuple[str, str], JSON | None] = {}

        def recording(namespace: str, name: str) -> JSON | None:
            found = lookup(namespace, name)
            reads[(namespace, name)] = found
            return found

        self._entries.pop(slot, None)
        value = parse(obj, recording)
        try:
            versions = tuple((ref, _version(found)) for ref, found in reads.items())
        except _Unversioned:
            return value
        self._entries[slot] = _Entry(version=version, reads=versions, value=value)
        return value

    @staticmethod
    def _unchanged(entry: _Entry[Any], lookup: Lookup) -> bool:
        try:
            return all(_version(lookup(*ref)) == seen for ref, seen in entry.reads)
        except _Unversioned:
            return False

    def drop(self, slot: K) -> None:
        self._entries.pop(slot, None)

    def prune_gone(self: SpecCache[tuple[str, str]], lookup: Lookup) -> None:
        """Drop the entries of objects ``lookup`` no longer finds, for a cache whose slots are
        the (namespace, name) of the objects parsed.

        Cheap enough to call on every reconcile: it sweeps only when the cache has doubled
        since the last sweep, so it costs O(1) amortised and the cache stays within twice the
        objects still there (plus a few).
        """
        if len(self._entries) <= self._sweep_above:
            return
        for slot in [s for s in self._entries if lookup(*s) is None]:
            del self._entries[slot]
        self._sweep_above = 2 * len(self._entries) + _SWEEP_FLOOR
