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


def test_a_managed_secret_is_cached_with_a_keyed_mac_in_place_of_its_data() -> None:
    from syncd.caching import slim_secret
    from syncd.destinations import CACHED_MAC, Desired, data_mac, decode_data, in_sync
    from syncd.fingerprint import fingerprint

    key, other_key = b"k" * 32, b"o" * 32
    original = copy.deepcopy(SECRET)
    kept = slim_secret(key)(SECRET)
    assert original == SECRET
    assert "data" not in kept and "hunter2" not in json.dumps(kept)
    assert "aHVudGVyMg==" not in json.dumps(kept)
    assert kept[CACHED_MAC] == fingerprint(key=key, data={"password": b"hunter2"})
    assert data_mac(kept, key=key) == data_mac(SECRET, key=key)  # cached or computed: same
    assert data_mac(kept, key=key) != fingerprint(key=other_key, data=decode_data(SECRET))
    # What a reconcile asks of the cached copy: does it hold this data?
    desired = Desired(namespace="app", name="web", type="Opaque", create=True, overwrite=False,
                      owner={"metadata": {"uid": "o-1"}},
                      data={"password": b"hunter2"}, owner_reference=False)
    owned = copy.deepcopy(kept)
    owned["metadata"]["labels"]["secrets.vault-syncd.dev/owner-uid"] = "o-1"
    owned["metadata"]["ownerReferences"] = []
    assert in_sync(desired, owned, key=key)
    changed = Desired(**{**desired.__dict__, "data": {"password": b"hunter3"}})
    assert not in_sync(changed, owned, key=key)
    empty = slim_secret(key)({**SECRET, "data": None})
    assert empty[CACHED_MAC] == fingerprint(key=key, data={})
