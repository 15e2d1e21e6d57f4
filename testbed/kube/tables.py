"""Server-side printing: ``meta.k8s.io/v1`` Tables with the real column sets.

``kubectl get`` asks for ``as=Table`` and prints whatever columns the server sends (upper-cased;
``priority > 0`` columns only with ``-o wide``), so the columns and cell formats here are those of
the apiserver's printers (pkg/printers/internalversion) and, for custom resources, of the CRD's
``additionalPrinterColumns``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from testbed.kube.kinds import ResourceType
from testbed.kube.meta import Obj, age_of, human_age, now, parse_time
from testbed.kube.schema import json_path
from testbed.kube.selectors import selector_string

Column = tuple[str, str, str, int]  # name, type, description, priority
NAME: Column = ("Name", "string", "Name must be unique within a namespace.", 0)
AGE: Column = (
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
)
CREATED_AT: Column = (
    "Created At",
    "date",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
)


def _none(value: Any) -> Any:
    return "<none>" if value in (None, "", []) else value


def _containers(obj: Obj) -> tuple[str, str]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in status.get("initContainerStatuses") or []:
        state = c.get("state") or {}
        if (state.get("terminated") or {}).get("exitCode", 0) != 0:
            reason = "Init:" + (state["terminated"].get("reason") or "Error")
        elif (state.get("waiting") or {}).get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
    has_running = False
    for c in reversed(status.get("containerStatuses") or []):
        state = c.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = f"ExitCode:{terminated.get('exitCode', 0)}"
        elif state.get("running") and c.get("ready"):
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _restarts(pod: Obj) -> str:
    total = 0
    last = None
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        total += int(c.get("restartCount") or 0)
        finished = parse_time(
            ((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        )
        if finished and (last is None or finished > last):
            last = finished
    if total and last is not None:
        return f"{total} ({human_age((now() - last).total_seconds())} ago)"
    return str(total)


def _pod_row(pod: Obj) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        _pod_status(pod),
        _restarts(pod),
        age_of(pod),
        _none(status.get("podIP")),
        _none((pod.get("spec") or {}).get("nodeName")),
        _none(status.get("nominatedNodeName")),
        "<none>" if not gates else f"0/{len(gates)}",
    ]


def _deployment_row(d: Obj) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(d)
    return [
        d["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age_of(d),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _sts_row(s: Obj) -> list[Any]:
    spec, status = s.get("spec") or {}, s.get("status") or {}
    names, images = _containers(s)
    return [
        s["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        age_of(s),
        names,
        images,
    ]


def _ds_row(d: Obj) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(d)
    selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    node_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"
    return [
        d["metadata"]["name"],
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        node_selector,
        age_of(d),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _rs_row(r: Obj) -> list[Any]:
    spec, status = r.get("spec") or {}, r.get("status") or {}
    names, images = _containers(r)
    return [
        r["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age_of(r),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _event_row(e: Obj) -> list[Any]:
    if e.get("apiVersion") == "events.k8s.io/v1":  # same printer, v1 field names
        e = {
            **e,
            "involvedObject": e.get("regarding"),
            "message": e.get("note"),
            "reportingComponent": e.get("reportingController"),
            "source": e.get("deprecatedSource"),
            "lastTimestamp": e.get("deprecatedLastTimestamp"),
            "firstTimestamp": e.get("deprecatedFirstTimestamp"),
            "count": e.get("deprecatedCount"),
        }
    obj = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    first = e.get("firstTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    last_t, first_t = parse_time(last), parse_time(first)
    source = e.get("source") or {}
    return [
        human_age((now() - last_t).total_seconds()) if last_t else "<unknown>",
        e.get("type", ""),
        e.get("reason", ""),
        f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}",
        obj.get("fieldPath", ""),
        source.get("component") or e.get("reportingComponent", ""),
        e.get("message", ""),
        human_age((now() - first_t).total_seconds()) if first_t else "<unknown>",
        e.get("count") or 1,
        e["metadata"]["name"],
    ]


def _binding_row(b: Obj) -> list[Any]:
    ref = b.get("roleRef") or {}
    subjects = b.get("subjects") or []

    def of(kind: str) -> str:
        names = []
        for s in subjects:
            if s.get("kind") == kind:
                names.append(
                    f"{s.get('namespace')}/{s.get('name')}"
                    if kind == "ServiceAccount"
                    else s.get("name", "")
                )
        return ", ".join(names)

    return [
        b["metadata"]["name"],
        f"{ref.get('kind')}/{ref.get('name')}",
        age_of(b),
        of("User"),
        of("Group"),
        of("ServiceAccount"),
    ]


def _service_row(s: Obj) -> list[Any]:
    spec = s.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        s["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        age_of(s),
        selector or "<none>",
    ]


def _node_row(n: Obj) -> list[Any]:
    ready = "Unknown"
    for cond in (n.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = "Ready" if cond.get("status") == "True" else "NotReady"
    info = (n.get("status") or {}).get("nodeInfo") or {}
    addresses = {
        a.get("type"): a.get("address") for a in (n.get("status") or {}).get("addresses") or []
    }
    return [
        n["metadata"]["name"],
        ready,
        "<none>",
        age_of(n),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _c(name: str, priority: int = 0, type_: str = "string", description: str = "") -> Column:
    return (name, type_, description, priority)


PRINTERS: dict[tuple[str, str], tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    ("", "Pod"): (
        [
            NAME,
            _c("Ready"),
            _c("Status"),
            _c("Restarts", type_="string"),
            AGE,
            _c("IP", 1),
            _c("Node", 1),
            _c("Nominated Node", 1),
            _c("Readiness Gates", 1),
        ],
        _pod_row,
    ),
    ("", "Secret"): (
        [NAME, _c("Type"), _c("Data", type_="string"), AGE],
        lambda s: [s["metadata"]["name"], s.get("type", ""), len(s.get("data") or {}), age_of(s)],
    ),
    ("", "ConfigMap"): (
        [NAME, _c("Data", type_="string"), AGE],
        lambda c: [
            c["metadata"]["name"],
            len(c.get("data") or {}) + len(c.get("binaryData") or {}),
            age_of(c),
        ],
    ),
    ("", "Namespace"): (
        [NAME, _c("Status"), AGE],
        lambda n: [n["metadata"]["name"], (n.get("status") or {}).get("phase", ""), age_of(n)],
    ),
    ("", "ServiceAccount"): (
        [NAME, _c("Secrets", type_="string"), AGE],
        lambda s: [s["metadata"]["name"], len(s.get("secrets") or []), age_of(s)],
    ),
    ("", "Event"): (
        [
            _c("Last Seen"),
            _c("Type"),
            _c("Reason"),
            _c("Object"),
            _c("Subobject", 1),
            _c("Source", 1),
            _c("Message"),
            _c("First Seen", 1),
            _c("Count", 1, "integer"),
            ("Name", "string", "Name must be unique within a namespace.", 1),
        ],
        _event_row,
    ),
    ("", "Service"): (
        [
            NAME,
            _c("Type"),
            _c("Cluster-IP"),
            _c("External-IP"),
            _c("Port(s)"),
            AGE,
            _c("Selector", 1),
        ],
        _service_row,
    ),
    ("", "Node"): (
        [
            NAME,
            _c("Status"),
            _c("Roles"),
            AGE,
            _c("Version"),
            _c("Internal-IP", 1),
            _c("External-IP", 1),
            _c("OS-Image", 1),
            _c("Kernel-Version", 1),
            _c("Container-Runtime", 1),
        ],
        _node_row,
    ),
    ("apps", "Deployment"): (
        [
            NAME,
            _c("Ready"),
            _c("Up-to-date", type_="integer"),
            _c("Available", type_="integer"),
            AGE,
            _c("Containers", 1),
            _c("Images", 1),
            _c("Selector", 1),
        ],
        _deployment_row,
    ),
    ("apps", "StatefulSet"): (
        [NAME, _c("Ready"), AGE, _c("Containers", 1), _c("Images", 1)],
        _sts_row,
    ),
    ("apps", "DaemonSet"): (
        [
            NAME,
            _c("Desired", type_="integer"),
            _c("Current", type_="integer"),
            _c("Ready", type_="integer"),
            _c("Up-to-date", type_="integer"),
            _c("Available", type_="integer"),
            _c("Node Selector"),
            AGE,
            _c("Containers", 1),
            _c("Images", 1),
            _c("Selector", 1),
        ],
        _ds_row,
    ),
    ("apps", "ReplicaSet"): (
        [
            NAME,
            _c("Desired", type_="integer"),
            _c("Current", type_="integer"),
            _c("Ready", type_="integer"),
            AGE,
            _c("Containers", 1),
            _c("Images", 1),
            _c("Selector", 1),
        ],
        _rs_row,
    ),
    ("coordination.k8s.io", "Lease"): (
        [NAME, _c("Holder"), AGE],
        lambda lease: [
            lease["metadata"]["name"],
            (lease.get("spec") or {}).get("holderIdentity", ""),
            age_of(lease),
        ],
    ),
    ("rbac.authorization.k8s.io", "RoleBinding"): (
        [NAME, _c("Role"), AGE, _c("Users", 1), _c("Groups", 1), _c("ServiceAccounts", 1)],
        _binding_row,
    ),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (
        [NAME, _c("Role"), AGE, _c("Users", 1), _c("Groups", 1), _c("ServiceAccounts", 1)],
        _binding_row,
    ),
}


def _definitions(columns: list[Column]) -> list[Obj]:
    out = []
    for name, type_, description, priority in columns:
        out.append(
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": description or name,
                "priority": priority,
            }
        )
    return out


def _custom_columns(rt: ResourceType) -> tuple[list[Column], Callable[[Obj], list[Any]]]:
    specs = rt.custom.columns()
    columns = [NAME] + [
        (
            c.get("name", ""),
            c.get("type", "string"),
            c.get("description", ""),
            int(c.get("priority", 0)),
        )
        for c in specs
    ]
    # A date column is printed as an age by the server.
    columns = [(n, "date" if t == "date" else t, d, p) for n, t, d, p in columns]

    def row(obj: Obj) -> list[Any]:
        cells: list[Any] = [obj["metadata"]["name"]]
        for spec in specs:
            value = json_path(obj, spec.get("jsonPath", ""))
            if spec.get("type") == "date":
                when = parse_time(value) if isinstance(value, str) else None
                value = human_age((now() - when).total_seconds()) if when else None
            elif isinstance(value, (dict, list)):
                value = json.dumps(value, separators=(",", ":"))
            cells.append(value)
        return cells

    return columns, row


def _default() -> tuple[list[Column], Callable[[Obj], list[Any]]]:
    return [NAME, CREATED_AT], lambda o: [
        o["metadata"]["name"],
        o["metadata"].get("creationTimestamp"),
    ]


def printer(rt: ResourceType) -> tuple[list[Column], Callable[[Obj], list[Any]]]:
    if rt.custom is not None:
        return _custom_columns(rt)
    if rt.group == "events.k8s.io":
        return PRINTERS[("", "Event")]
    return PRINTERS.get((rt.group, rt.kind)) or _default()


def row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    rt: ResourceType,
    objs: list[Obj],
    *,
    include: str = "Metadata",
    headers: bool = True,
    list_meta: Obj | None = None,
) -> Obj:
    """A Table of ``objs`` (already in ``rt``'s external form)."""
    columns, row_of = printer(rt)
    rows = []
    for obj in objs:
        cells = row_of(obj)[: len(columns)]
        row: Obj = {"cells": cells}
        ro = row_object(obj, include)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {}}
    if headers:
        out["columnDefinitions"] = _definitions(columns)
    out["rows"] = rows
    return out
