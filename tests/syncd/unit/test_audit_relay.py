"""The relay's filter on entries as Vault writes them (``audit/types.go``, Go's encoder), beyond
the basics in test_changes.py: a device ``prefix``, the probe sent on enable, ``recover``, and a
version Vault HMAC'd because the kv plugin runs out of process."""

from __future__ import annotations

import json
from typing import Any

from syncd.audit_relay import keep

#: A kv-v2 write's response entry, field for field as Vault 1.20 writes it (struct order).
WRITE = (
    '{"time":"2026-11-30T18:00:00.123456789Z","auth":{"accessor":"hmac-sha256:aa",'
    '"client_token":"hmac-sha256:bb","display_name":"token","policies":["root"],'
    '"policy_results":{"allowed":true,"granting_policies":[{"name":"root",'
    '"namespace_id":"root","type":"acl"}]},"token_policies":["root"],'
    '"token_issue_time":"2026-11-30T17:00:00Z","token_type":"service"},'
    '"request":{"client_id":"cid","client_token":"hmac-sha256:bb",'
    '"client_token_accessor":"hmac-sha256:aa","data":{"data":{"password":"hmac-sha256:cc"},'
    '"options":{"cas":"hmac-sha256:dd"}},"id":"r1","mount_accessor":"kv_1a2b3c4d",'
    '"mount_class":"secret","mount_point":"secret/","mount_running_version":"v0.24.0+builtin",'
    '"mount_type":"kv","namespace":{"id":"root"},"operation":"update",'
    '"path":"secret/data/app","remote_address":"10.0.0.7","remote_port":51234},'
    '"response":{"data":{"created_time":"hmac-sha256:ee","custom_metadata":null,'
    '"deletion_time":"hmac-sha256:ff","destroyed":false,"version":7},'
    '"mount_accessor":"kv_1a2b3c4d","mount_class":"secret","mount_point":"secret/",'
    '"mount_running_plugin_version":"v0.24.0+builtin","mount_type":"kv"},"type":"response"}\n'
)


def _changed(**fields: Any) -> bytes:
    entry = json.loads(WRITE)
    for dotted, value in fields.items():
        *parents, last = dotted.split("__")
        target = entry
        for name in parents:
            target = target[name]
        target[last] = value
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"


def test_a_write_as_vault_writes_it_is_kept() -> None:
    assert keep(WRITE.encode()) == {"mount": "secret", "path": "data/app", "version": 7}


def test_a_device_prefix_is_skipped() -> None:
    assert keep(b"vault-a " + WRITE.encode()) == {
        "mount": "secret", "path": "data/app", "version": 7}


def test_the_probe_vault_sends_on_enable_is_not_a_notice() -> None:
    probe = (b'{"time":"2026-11-30T18:00:00Z","auth":{"token_type":"default"},"request":'
             b'{"id":"p1","namespace":{"id":"root"},"operation":"update",'
             b'"path":"sys/audit/test"},"type":"request"}\n')
    assert keep(probe) is None


def test_a_snapshot_recover_changes_the_secret() -> None:
    assert keep(_changed(request__operation="recover")) == {
        "mount": "secret", "path": "data/app", "version": 7}


def test_a_version_hmacd_by_an_external_plugin_is_left_out() -> None:
    # Out of process, the plugin's answer crosses gRPC as JSON and comes back a json.Number,
    # which Vault's hashing walk treats as a string.
    external = _changed(response__data__version="hmac-sha256:99",
                        request__mount_is_external_plugin=True)
    assert keep(external) == {"mount": "secret", "path": "data/app"}


def test_a_namespaced_mount_keeps_its_relative_path() -> None:
    # Enterprise namespaces: mount_point and path are relative to the namespace.
    entry = _changed(request__namespace={"id": "n1", "path": "team-a/"})
    assert keep(entry) == {"mount": "secret", "path": "data/app", "version": 7}


def test_jsonx_entries_are_never_kept() -> None:
    assert keep(b'<json:object name="request"><json:string name="type">response'
                b'</json:string></json:object>\n') is None
