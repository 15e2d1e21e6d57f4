"""Conversion between the stored form of an object and the API version a request names.

Two cases matter here. Events are stored once, in core/v1 shape, and served both as core/v1 and
as events.k8s.io/v1 (``regarding`` <-> ``involvedObject``, ``note`` <-> ``message``, ...), as the
real server does over one etcd key space. Custom resources with several served versions use
conversion strategy ``None``: only ``apiVersion`` changes.
"""

from __future__ import annotations

from typing import Any

from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj

_V1_TO_CORE = {
    "regarding": "involvedObject",
    "related": "related",
    "note": "message",
    "reason": "reason",
    "type": "type",
    "eventTime": "eventTime",
    "series": "series",
    "action": "action",
    "reportingController": "reportingComponent",
    "reportingInstance": "reportingInstance",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def is_events_v1(rt: ResourceType) -> bool:
    return rt.group == "events.k8s.io"


def to_external(rt: ResourceType, obj: Obj) -> Obj:
    """The stored object as ``rt``'s API version presents it (no copy when nothing changes)."""
    if is_events_v1(rt):
        out: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "events.k8s.io/v1",
            "metadata": obj.get("metadata", {}),
        }
        for v1_key, core_key in _V1_TO_CORE.items():
            value = obj.get(core_key)
            if value is not None and value != {}:
                out[v1_key] = value
        out.setdefault("eventTime", None)
        return out
    if obj.get("apiVersion") != rt.api_version:
        out = dict(obj)
        out["apiVersion"] = rt.api_version
        return out
    return obj


def to_internal(rt: ResourceType, obj: Obj) -> Obj:
    """A request body in ``rt``'s version, converted to the stored form."""
    if is_events_v1(rt):
        out: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": obj.get("metadata") or {},
        }
        for v1_key, core_key in _V1_TO_CORE.items():
            if obj.get(v1_key) is not None:
                out[core_key] = obj[v1_key]
        out.setdefault("involvedObject", {})
        return out
    return obj
