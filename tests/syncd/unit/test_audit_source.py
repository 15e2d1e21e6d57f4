"""The audit source resolves each object's Vault address once per reference, not once per
object (a health change asks for all of them), and afresh after a reference changes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from plumbing.queueing import WorkQueue
from syncd.audit_source import AuditSource
from syncd.changes import Changes
from syncd.specs import VaultStaticSecret, parse_vault_static_secret
from testbed.waiting import until

Key = tuple[str, str]


def vss(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "secrets.vault-syncd.dev/v1beta1", "kind": "VaultStaticSecret",
        "metadata": {"name": name, "namespace": "team-a", "generation": 1, "uid": name},
        "spec": {"mount": "secret", "path": name, "type": "kv-v2", "refreshAfter": "60s",
                 "destination": {"name": name}, "syncConfig": {"instantUpdates": True}},
    }


async def _noop(key: Key) -> None:
    del key


async def test_addresses_are_resolved_once_per_reference_and_again_after_a_change() -> None:
    address = {"now": "http://vault-a:8200"}
    resolved: list[str] = []

    def resolve(spec: VaultStaticSecret) -> Any:
        resolved.append(spec.name)
        return SimpleNamespace(), SimpleNamespace(address=address["now"])

    queue: WorkQueue[Key] = WorkQueue(worker=_noop)
    changes = Changes(queue=queue, reschedule=lambda key, seconds, **_: None, safety_seconds=600)
    source = AuditSource(changes=changes, resolve=resolve, listen="127.0.0.1:0", token="t")
    changes.attach(source)
    for i in range(100):  # the operator registers each object, asking its interval
        assert changes.refresh_seconds(("team-a", f"s{i}"), vss(f"s{i}"), 60) == 60
    assert len(resolved) == 1  # one VaultAuth reference among the hundred
    spec = parse_vault_static_secret(vss("s0"))

    running = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.listening.wait(), 5)
        address["now"] = "http://vault-b:8200"  # the VaultConnection's address changed
        changes.references_changed()
        await until(lambda: len(resolved) >= 2)
        assert source._address(spec) == "http://vault-b:8200"
        assert len(resolved) == 2  # and again once for all hundred
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
