"""``parse_event`` on events as Vault Enterprise sends them (``vault/eventbus``, the kv plugin's
``kvEvent``), beyond Vault's own example in test_changes.py."""

from __future__ import annotations

import json
from typing import Any

from syncd.changes import Notice
from syncd.events_source import parse_event


def _event(event_type: str, metadata: dict[str, str], **data: Any) -> str:
    return json.dumps({
        "id": "e1", "source": "vault://vault-0", "specversion": "1.0", "type": "*",
        "data": {
            "event": {"id": "e1", "metadata": metadata},
            "event_type": event_type,
            "plugin_info": {"mount_class": "secret", "mount_accessor": "kv_1a2b3c4d",
                            "mount_path": "team/kv/", "plugin": "kv",
                            "plugin_version": "v0.24.0+builtin"},
            **data,
        },
        "datacontentype": "application/cloudevents", "time": "2026-11-30T18:00:00.1Z",
    })


def test_a_metadata_write_has_no_versions_and_names_the_metadata_path() -> None:
    event = _event("kv-v2/metadata-write", {
        "data_path": "team/kv/metadata/app", "modified": "true",
        "operation": "metadata-write", "path": "team/kv/metadata/app"})
    assert parse_event(event) == Notice(mount="team/kv", path="metadata/app")


def test_a_destroy_has_no_data_path_and_still_names_its_path() -> None:
    event = _event("kv-v2/destroy", {
        "current_version": "3", "destroyed_versions": "[1,2]", "modified": "true",
        "oldest_version": "1", "operation": "destroy", "path": "team/kv/destroy/app"})
    assert parse_event(event) == Notice(mount="team/kv", path="destroy/app", version=3)


def test_a_namespaced_event_is_relative_to_its_namespace() -> None:
    event = _event("kv-v2/data-write", {
        "current_version": "2", "data_path": "team/kv/data/app", "modified": "true",
        "oldest_version": "1", "operation": "data-write", "path": "team/kv/data/app",
        "vault_index": "opaque"}, namespace="ns1/")
    assert parse_event(event) == Notice(mount="team/kv", path="data/app", version=2)


def test_a_kv_v1_write_has_the_key_below_the_mount() -> None:
    event = _event("kv-v1/write", {"data_path": "team/kv/app", "modified": "true",
                                   "operation": "write", "path": "team/kv/app"})
    assert parse_event(event) == Notice(mount="team/kv", path="app")
