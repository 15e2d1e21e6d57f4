"""Decoding the protobuf bodies kubectl 1.32's typed clients send.

``kubectl create secret|configmap|namespace|serviceaccount|token`` and ``kubectl auth can-i`` POST
``application/vnd.kubernetes.protobuf`` and do not fall back to JSON on a 415, so the kinds they
create are decoded here (field numbers from k8s.io/api generated.proto) into the JSON shape the
rest of the emulation works on. The reply is JSON, which those clients accept. Anything else
sent as protobuf gets the real server's 415.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from testbed.kube import errors

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

Schema = dict[int, tuple[str, str, Any]]

TIME: Schema = {1: ("seconds", "int", None), 2: ("nanos", "int", None)}
OWNER: Schema = {
    1: ("kind", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
META: Schema = {
    1: ("name", "string", None),
    2: ("generateName", "string", None),
    3: ("namespace", "string", None),
    5: ("uid", "string", None),
    6: ("resourceVersion", "string", None),
    7: ("generation", "int", None),
    8: ("creationTimestamp", "time", TIME),
    11: ("labels", "map_ss", None),
    12: ("annotations", "map_ss", None),
    13: ("ownerReferences", "repeated_message", OWNER),
    14: ("finalizers", "repeated_string", None),
}
LOCAL_REF: Schema = {1: ("name", "string", None)}
OBJECT_REF: Schema = {
    1: ("kind", "string", None),
    2: ("namespace", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Secret"): {
        1: ("metadata", "message", META),
        2: ("data", "map_sb", None),
        3: ("type", "string", None),
        4: ("stringData", "map_ss", None),
        5: ("immutable", "bool", None),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", "message", META),
        2: ("data", "map_ss", None),
        3: ("binaryData", "map_sb", None),
        4: ("immutable", "bool", None),
    },
    ("v1", "Namespace"): {
        1: ("metadata", "message", META),
        2: ("spec", "message", {1: ("finalizers", "repeated_string", None)}),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", "message", META),
        2: ("secrets", "repeated_message", OBJECT_REF),
        3: ("imagePullSecrets", "repeated_message", LOCAL_REF),
        4: ("automountServiceAccountToken", "bool", None),
    },
    ("authentication.k8s.io/v1", "TokenRequest"): {
        1: ("metadata", "message", META),
        2: (
            "spec",
            "message",
            {
                1: ("audiences", "repeated_string", None),
                4: ("expirationSeconds", "int", None),
                3: (
                    "boundObjectRef",
                    "message",
                    {
                        1: ("kind", "string", None),
                        2: ("apiVersion", "string", None),
                        3: ("name", "string", None),
                        4: ("uid", "string", None),
                    },
                ),
            },
        ),
    },
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: ("metadata", "message", META),
        2: (
            "spec",
            "message",
            {
                1: (
                    "resourceAttributes",
                    "message",
                    {
                        1: ("namespace", "string", None),
                        2: ("verb", "string", None),
                        3: ("group", "string", None),
                        4: ("version", "string", None),
                        5: ("resource", "string", None),
                        6: ("subresource", "string", None),
                        7: ("name", "string", None),
                    },
                ),
                2: (
                    "nonResourceAttributes",
                    "message",
                    {1: ("path", "string", None), 2: ("verb", "string", None)},
                ),
            },
        ),
    },
}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int", None),
    2: (
        "preconditions",
        "message",
        {1: ("uid", "string", None), 2: ("resourceVersion", "string", None)},
    ),
    3: ("orphanDependents", "bool", None),
    4: ("propagationPolicy", "string", None),
    5: ("dryRun", "repeated_string", None),
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) triples of one message."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    value: Any
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _map_entry(raw: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _, v in fields(raw):
        if number == 1:
            key = v.decode()
        elif number == 2:
            value = v
    return key, value


def message(raw: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _, value in fields(raw):
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind, sub = spec
        if kind == "string":
            if value:  # gogo-protobuf writes empty strings too; JSON would omit them
                out[name] = value.decode()
        elif kind == "int":
            out[name] = value - (1 << 64) if value >= 1 << 63 else value
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "message":
            out[name] = message(value, sub)
        elif kind == "time":
            parts = message(value, sub)
            if not parts.get("seconds"):
                continue
            stamp = dt.datetime.fromtimestamp(parts.get("seconds", 0), dt.UTC)
            out[name] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind == "map_ss":
            key, v = _map_entry(value)
            out.setdefault(name, {})[key] = v.decode()
        elif kind == "map_sb":
            key, v = _map_entry(value)
            out.setdefault(name, {})[key] = base64.b64encode(v).decode()
        elif kind == "repeated_string":
            out.setdefault(name, []).append(value.decode())
        elif kind == "repeated_message":
            out.setdefault(name, []).append(message(value, sub))
    return out


def decode(raw: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\0`` envelope into a JSON-shaped object (415 for kinds we cannot read)."""
    if not raw.startswith(MAGIC):
        raise errors.bad_request(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        )
    try:
        envelope = message(
            raw[len(MAGIC) :],
            {
                1: (
                    "typeMeta",
                    "message",
                    {1: ("apiVersion", "string", None), 2: ("kind", "string", None)},
                ),
                2: ("raw", "bytes", None),
            },
        )
        body = b""
        for number, _, value in fields(raw[len(MAGIC) :]):
            if number == 2:
                body = value
        type_meta = envelope.get("typeMeta") or {}
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        schema = KINDS.get((api_version, kind))
        if schema is None:
            raise errors.unsupported_media_type(["application/json", "application/yaml"])
        obj = message(body, schema)
    except ValueError as exc:
        raise errors.bad_request(f"unable to decode protobuf body: {exc}") from exc
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj


def decode_delete_options(raw: bytes) -> dict[str, Any]:
    if raw.startswith(MAGIC):
        body = b""
        for number, _, value in fields(raw[len(MAGIC) :]):
            if number == 2:
                body = value
        return message(body, DELETE_OPTIONS)
    return message(raw, DELETE_OPTIONS)
