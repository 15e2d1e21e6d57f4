"""Change notices: what they schedule (and what not), the refresh intervals, and the parsers."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

from plumbing.queueing import WorkQueue
from syncd.audit_relay import keep
from syncd.changes import Changes, Notice, notice
from syncd.events_source import parse_event
from syncd.refreshing import Refreshes
from syncd.specs import VaultStaticSecret
from testbed.waiting import until

Key = tuple[str, str]


def vss(name: str, *, namespace: str = "team-a", path: str = "app", mount: str = "secret",
        instant: bool = True, kv_type: str = "kv-v2", refresh: str = "60s") -> dict[str, Any]:
    return {
        "apiVersion": "secrets.vault-syncd.dev/v1beta1", "kind": "VaultStaticSecret",
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "uid": name},
        "spec": {"mount": mount, "path": path, "type": kv_type, "refreshAfter": refresh,
                 "destination": {"name": name}, "syncConfig": {"instantUpdates": instant}},
    }


class FakeSource:
    def __init__(self) -> None:
        self.connected: set[str] = set()

    def covers(self, spec: VaultStaticSecret) -> bool:
        return spec.namespace in self.connected

    async def run(self) -> None:
        raise NotImplementedError


async def _noop(key: Key) -> None:
    del key


def make() -> tuple[Changes, WorkQueue[Key], dict[Key, float], FakeSource]:
    queue: WorkQueue[Key] = WorkQueue(worker=_noop)
    intervals: dict[Key, float] = {}

    def reschedule(key: Key, seconds: float, *, first: float | None = None) -> None:
        intervals[key] = seconds

    changes = Changes(queue=queue, reschedule=reschedule, safety_seconds=600)
    source = FakeSource()
    changes.attach(source)
    return changes, queue, intervals, source


async def test_a_notice_schedules_exactly_the_instant_objects_reading_its_path() -> None:
    changes, queue, _, _ = make()
    for key, obj in {
        ("team-a", "one"): vss("one"),
        ("team-b", "same-path"): vss("same-path", namespace="team-b"),
        ("team-a", "polled"): vss("polled", instant=False),
        ("team-a", "other"): vss("other", path="other"),
        ("team-a", "v1"): vss("v1", kv_type="kv-v1", mount="kv", path="app"),
    }.items():
        changes.refresh_seconds(key, obj, 60)

    assert sorted(changes.notify(Notice(mount="secret", path="data/app"))) == [
        ("team-a", "one"), ("team-b", "same-path")]
    assert len(queue) == 2
    # Every kv-v2 request path of the secret counts; the bare path is kv-v1's only.
    for area in ("metadata", "delete", "undelete", "destroy"):
        assert changes.notify(Notice(mount="secret", path=f"{area}/app"))
    assert changes.notify(Notice(mount="secret", path="app")) == []
    assert changes.notify(Notice(mount="kv", path="app")) == [("team-a", "v1")]
    # Nobody reads these: nothing is scheduled.
    assert changes.notify(Notice(mount="secret", path="data/nobody")) == []
    assert changes.notify(Notice(mount="other", path="data/app")) == []
    # A source narrows what its notices may schedule (its login, its Vault).
    assert changes.notify(Notice(mount="secret", path="data/app"),
                          among=lambda spec: spec.namespace == "team-b") == [
        ("team-b", "same-path")]


async def test_deleted_objects_and_failing_ones_are_not_scheduled() -> None:
    changes, queue, _, _ = make()
    changes.refresh_seconds(("team-a", "one"), vss("one"), 60)
    changes.forget(("team-a", "one"))
    assert changes.notify(Notice(mount="secret", path="data/app")) == []
    changes.refresh_seconds(("team-a", "one"), vss("one"), 60)
    changes.refresh_seconds(("team-a", "one"), vss("one", instant=False), 60)  # opted out
    assert changes.notify(Notice(mount="secret", path="data/app")) == []
    assert len(queue) == 0


async def test_the_safety_interval_applies_only_while_the_source_is_connected() -> None:
    changes, _, intervals, source = make()
    assert changes.refresh_seconds(("team-a", "one"), vss("one"), 60) == 60
    assert changes.refresh_seconds(("team-a", "slow"), vss("slow", refresh="1h"), 60) == 3600
    source.connected.add("team-a")
    changes.health_changed()
    assert intervals == {}  # applied by the source's task, a batch at a time
    await changes.apply_health()
    assert intervals == {("team-a", "one"): 600}  # never shorter than refreshAfter (1h stays)
    source.connected.clear()
    changes.health_changed()
    await changes.apply_health()
    assert intervals == {("team-a", "one"): 60}
    assert changes.refresh_seconds(("team-a", "p"), vss("p", instant=False), 60) == 60


def test_notice_splits_the_mount_off_the_request_path() -> None:
    assert notice(mount_point="secret/", request_path="secret/data/a/b") == Notice(
        mount="secret", path="data/a/b")
    assert notice(mount_point="team/kv/", request_path="team/kv/app") == Notice(
        mount="team/kv", path="app")
    assert notice(mount_point="secret/", request_path="secretive/data/a") is None
    assert notice(mount_point="secret/", request_path="secret/") is None


def test_vault_events_are_parsed_as_vault_sends_them() -> None:
    event = {  # Vault's own example (command/agentproxyshared/cache/static_secret_cache_updater.go)
        "id": "a3be9fb1-b514-519f-5b25-b6f144a8c1ce", "source": "https://vaultproject.io/",
        "specversion": "1.0", "type": "*",
        "data": {
            "event": {"id": "a3be9fb1-b514-519f-5b25-b6f144a8c1ce", "metadata": {
                "current_version": "1", "data_path": "secret/data/foo", "modified": "true",
                "oldest_version": "0", "operation": "data-write", "path": "secret/data/foo"}},
            "event_type": "kv-v2/data-write",
            "plugin_info": {"mount_class": "secret", "mount_accessor": "kv_5dc4d18e",
                            "mount_path": "secret/", "plugin": "kv"},
        },
        "datacontentype": "application/cloudevents", "time": "2023-09-12T15:19:49.394915-07:00",
    }
    assert parse_event(json.dumps(event)) == Notice(mount="secret", path="data/foo", version=1)
    assert parse_event("not json") is None
    assert parse_event(json.dumps({"data": {"event_type": "kv-v2/data-write"}})) is None


def _entry(**changes: Any) -> bytes:
    entry: dict[str, Any] = {
        "time": "2026-11-30T18:00:00Z", "type": "response",
        "auth": {"client_token": "hmac-sha256:aa", "accessor": "hmac-sha256:bb"},
        "request": {"id": "r1", "operation": "update", "mount_point": "secret/",
                    "mount_type": "kv", "path": "secret/data/app",
                    "data": {"data": {"password": "hmac-sha256:cc"}}},
        "response": {"data": {"version": 7, "created_time": "hmac-sha256:dd",
                              "deletion_time": "hmac-sha256:ee", "destroyed": False}},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if value is None:
            entry[section].pop(field) if field else entry.pop(section)
        elif field:
            entry[section][field] = value
        else:
            entry[section] = value
    return json.dumps(entry, separators=(",", ":")).encode()


def test_the_relay_keeps_only_successful_kv_changes_and_only_their_path() -> None:
    assert keep(_entry()) == {"mount": "secret", "path": "data/app", "version": 7}
    assert keep(_entry(request__path="secret/delete/app", response=None)) == {
        "mount": "secret", "path": "delete/app"}
    assert keep(_entry(type="request", response=None)) is None
    assert keep(_entry(error="permission denied")) is None
    assert keep(_entry(request__operation="read")) is None
    assert keep(_entry(request__operation="list")) is None
    assert keep(_entry(request__mount_type="transit", request__mount_point="transit/",
                       request__path="transit/encrypt/k")) is None
    assert keep(b"{not json") is None
    assert keep(b'{"type":"response","mount_type":"kv"') is None  # truncated


async def test_a_notice_overtakes_due_refreshes_and_reaches_a_failing_object() -> None:
    """Issue 12: a notice waited 75 s (p50) behind a backlog of due refreshes at 10,000."""
    ran: list[Key] = []
    release = asyncio.Event()

    async def worker(key: Key) -> None:
        ran.append(key)
        if key == ("team-a", "busy"):
            await release.wait()
        if key == ("team-a", "deleted"):
            raise RuntimeError("the latest version is deleted")

    queue: WorkQueue[Key] = WorkQueue(worker=worker, concurrency=1, backoff_base=60)
    changes = Changes(queue=queue, reschedule=lambda key, seconds, **_: None,
                      safety_seconds=600)
    changes.attach(FakeSource())
    changes.refresh_seconds(("team-a", "one"), vss("one"), 60)
    changes.refresh_seconds(("team-a", "deleted"), vss("deleted", path="gone"), 60)
    runner = asyncio.create_task(queue.run())
    try:
        queue.add(("team-a", "deleted"))
        await until(lambda: queue.failures(("team-a", "deleted")) == 1)
        backoff = queue.due_in(("team-a", "deleted"))
        assert backoff is not None and backoff > 20
        queue.add(("team-a", "busy"))
        await until(lambda: ran[-1] == ("team-a", "busy"))
        for i in range(500):
            queue.add(("team-b", f"refresh-{i}"))  # refreshes due, waiting for a worker
        assert changes.notify(Notice(mount="secret", path="data/app")) == [("team-a", "one")]
        # A new version where the deleted one was: read now, not after the backoff.
        assert changes.notify(Notice(mount="secret", path="data/gone")) == [
            ("team-a", "deleted")]
        release.set()
        await until(lambda: len(ran) >= 5)
        assert set(ran[2:4]) == {("team-a", "one"), ("team-a", "deleted")}
        assert ran[4] == ("team-b", "refresh-0")
    finally:
        await queue.close(grace=1)
        await runner


def _burst(refreshes: Refreshes, keys: list[Key]) -> tuple[float, int]:
    """The latest first refresh of ``keys`` (seconds from now), and the most in any second."""
    due = [refreshes.due_in(key) for key in keys]
    assert all(d is not None for d in due)
    seconds = [float(d) for d in due if d is not None]
    return max(seconds), max(Counter(int(d) for d in seconds).values())


async def test_a_connect_or_a_drop_spreads_first_refreshes_over_the_new_interval() -> None:
    """Issue 12: at a drop every object's read came within the last 10 % of refreshAfter (1,000
    objects: ~170 reads in one second), at a connect all together a safety interval later."""
    queue: WorkQueue[Key] = WorkQueue(worker=_noop)
    refreshes = Refreshes(queue=queue, rng=random.Random(1))
    changes = Changes(queue=queue, reschedule=refreshes.ensure, safety_seconds=600,
                      rng=random.Random(2))
    source = FakeSource()
    changes.attach(source)
    keys = [("team-a", f"s{i}") for i in range(1000)]
    for key in keys:
        refreshes.ensure(key, changes.refresh_seconds(key, vss(key[1]), 60))
    keys.append(("team-a", "slow"))
    refreshes.ensure(keys[-1], changes.refresh_seconds(keys[-1], vss("slow", refresh="1h"), 60))

    source.connected.add("team-a")
    changes.health_changed()
    await changes.apply_health()
    latest, most = _burst(refreshes, keys[:-1])
    assert latest <= 600  # never later than the new interval
    assert most <= 12  # 1,000 over 600 s: ~1.7 a second (all within 60 s before: ~17)
    slow = refreshes.due_in(keys[-1])
    assert slow is not None and 3600 * 0.9 - 30 <= slow <= 3600  # its interval did not change

    source.connected.clear()
    changes.health_changed()
    await changes.apply_health()
    latest, most = _burst(refreshes, keys[:-1])
    assert latest <= 60  # refreshAfter: the staleness bound without the source
    assert most <= 30  # 1,000 over 60 s: ~17 a second (before: ~190 within the last 6 s)
    firsts = sorted(d for k in keys[:-1] if (d := refreshes.due_in(k)) is not None)
    assert firsts[100] < 10 and firsts[500] < 35  # spread over the interval, not at its end
