"""The cache transform keeps what syncd reads and drops the API server's bookkeeping."""

from __future__ import annotations

import copy
import json

from syncd.caching import slim

SECRET = {
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {
        "name": "web", "namespace": "app", "uid": "u-1", "resourceVersion": "42",
        "labels": {"app.kubernetes.io/managed-by": "vault-syncd"},
        "annotations": {"team": "a"},
        "ownerReferences": [{"kind": "VaultStaticSecret", "name": "web", "uid": "o-1"}],
        "managedFields": [{"manager": "vault-syncd", "operation": "Update",
                           "fieldsV1": {"f:data": {"f:password": {}}}}],
    },
    "data": {"password": "aHVudGVyMg=="},
}


def test_managed_fields_are_dropped_and_everything_else_kept() -> None:
    original = copy.deepcopy(SECRET)
    kept = slim(SECRET)
    assert "managedFields" not in kept["metadata"]
    expected = copy.deepcopy(SECRET)
    del expected["metadata"]["managedFields"]  # type: ignore[attr-defined]
    assert kept == expected
    assert original == SECRET  # the event's object is not changed under anyone's feet


def test_keys_and_short_values_are_shared_between_objects() -> None:
    one, two = (slim(json.loads(json.dumps(SECRET))) for _ in range(2))
    key_one = next(k for k in one["metadata"] if k == "resourceVersion")
    key_two = next(k for k in two["metadata"] if k == "resourceVersion")
    assert key_one is key_two
    assert one["metadata"]["namespace"] is two["metadata"]["namespace"]
    assert one["metadata"]["ownerReferences"][0]["kind"] is \
        two["metadata"]["ownerReferences"][0]["kind"]
