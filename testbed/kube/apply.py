"""Server-side apply and ``metadata.managedFields`` (a small structured-merge-diff).

Ownership is tracked per manager as a set of field paths written in the FieldsV1 vocabulary:
``f:<field>`` for struct/map fields, ``k:{"name":"app"}`` for items of list-maps (the item itself
is owned through a ``.`` marker), ``v:"x"`` for set members; atomic lists and scalars are leaves.

* An **apply** (``application/apply-patch+yaml``) merges the applied configuration into the live
  object, fails with a 409 Conflict listing every field another manager owns with a different
  value (unless ``force=true``, which takes those fields over), and removes fields the applier
  owned before, no longer applies, and nobody else owns.
* Every other write is an **update**: the manager (``fieldManager`` or the User-Agent's product)
  takes ownership of each field it changed, and other managers lose those fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from testbed.kube.errors import ApiError
from testbed.kube.meta import Obj, clone, rfc3339

Path = tuple[str, ...]
ListTypeOf = Callable[[tuple[str, ...]], tuple[str, tuple[str, ...]]]

_META_IGNORED = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
}
ITEM = "."  # FieldsV1 marker: the list item (or map) itself is owned


# Defaults of list-map key fields: an applied ``{"containerPort": 80}`` is the live item
# ``{"containerPort": 80, "protocol": "TCP"}`` (SSA defaults keys before merging).
_KEY_DEFAULTS = {"protocol": "TCP"}


def _item_key(item: Any, keys: tuple[str, ...]) -> str:
    picked = {}
    for k in keys:
        if isinstance(item, dict) and k in item:
            picked[k] = item[k]
        elif k in _KEY_DEFAULTS:
            picked[k] = _KEY_DEFAULTS[k]
    return "k:" + json.dumps(picked, separators=(",", ":"))


def flatten(obj: Obj, list_type: ListTypeOf, *, status: str) -> dict[Path, Any]:
    """Leaf paths -> values, plus list-map item paths (ending in ``.``) -> None.

    ``status`` is "skip" (main resource of a kind with a status subresource), "only" (the status
    subresource) or "keep".
    """
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "status" and status == "skip":
            continue
        if status == "only" and key != "status":
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey in _META_IGNORED:
                    continue
                _walk(mvalue, ("f:metadata", f"f:{mkey}"), ("metadata", mkey), list_type, out)
            continue
        _walk(value, (f"f:{key}",), (key,), list_type, out)
    return out


def _walk(
    value: Any, path: Path, names: tuple[str, ...], list_type: ListTypeOf, out: dict[Path, Any]
) -> None:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _walk(sub, (*path, f"f:{key}"), (*names, key), list_type, out)
        return
    if isinstance(value, list) and value:
        kind, keys = list_type(names)
        if kind == "map" and keys and all(isinstance(v, dict) for v in value):
            for item in value:
                item_path = (*path, _item_key(item, keys))
                out[(*item_path, ITEM)] = None
                for key, sub in item.items():
                    _walk(sub, (*item_path, f"f:{key}"), (*names, key), list_type, out)
            return
        if kind == "set":
            for item in value:
                out[(*path, "v:" + json.dumps(item, separators=(",", ":")))] = item
            return
    out[path] = value


def to_fields_v1(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    return root


def from_fields_v1(fields: Obj | None, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in (fields or {}).items():
        path = (*prefix, key)
        if key == ITEM:
            out.add(path)
        elif isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, path)
        else:
            out.add(path)
    return out


def display(path: Path) -> str:
    """``.spec.containers[name="app"].image``, as conflict messages print paths."""
    text = ""
    for part in path:
        if part == ITEM:
            continue
        if part.startswith("f:"):
            text += "." + part[2:]
        elif part.startswith("k:"):
            keys = json.loads(part[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif part.startswith("v:"):
            text += f"[={part[2:]}]"
        elif part.startswith("i:"):
            text += f"[{part[2:]}]"
    return text


class Entry:
    """One managedFields entry."""

    def __init__(self, raw: Obj) -> None:
        self.manager = str(raw.get("manager", ""))
        self.operation = str(raw.get("operation", "Update"))
        self.api_version = str(raw.get("apiVersion", ""))
        self.time = raw.get("time")
        self.subresource = str(raw.get("subresource", ""))
        self.paths = from_fields_v1(raw.get("fieldsV1"))

    def ident(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def dump(self) -> Obj:
        raw: Obj = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.paths),
        }
        if self.subresource:
            raw["subresource"] = self.subresource
        return raw


def _entries(obj: Obj | None) -> list[Entry]:
    if not obj:
        return []
    return [
        Entry(e)
        for e in (obj.get("metadata") or {}).get("managedFields") or []
        if isinstance(e, dict)
    ]


def _store(obj: Obj, entries: list[Entry]) -> None:
    kept = [e.dump() for e in entries if e.paths]
    md = obj.setdefault("metadata", {})
    if kept:
        md["managedFields"] = kept
    else:
        md.pop("managedFields", None)


def _present(paths: set[Path], flat: dict[Path, Any]) -> set[Path]:
    """Keep the owned paths that still exist in the object."""
    prefixes = {p[:i] for p in flat for i in range(1, len(p) + 1)}
    return {p for p in paths if p in flat or p in prefixes}


def record_update(
    *,
    old: Obj | None,
    new: Obj,
    manager: str,
    api_version: str,
    subresource: str,
    list_type: ListTypeOf,
    status_mode: str,
) -> None:
    """Update ``new``'s managedFields for a non-apply write by ``manager`` (in place)."""
    incoming = (new.get("metadata") or {}).get("managedFields")
    previous = (old or {}).get("metadata", {}).get("managedFields")
    if incoming == []:  # an explicit empty list resets ownership
        entries: list[Entry] = []
    elif incoming is not None and incoming != previous:
        entries = _entries(new)
    else:
        entries = _entries(old)
    new_flat = flatten(new, list_type, status=status_mode)
    old_flat = flatten(old, list_type, status=status_mode) if old else {}
    changed = {p for p, v in new_flat.items() if p not in old_flat or old_flat[p] != v}
    ident = (manager, "Update", subresource)
    mine = next((e for e in entries if e.ident() == ident), None)
    for entry in entries:
        if entry is not mine:
            entry.paths -= changed
        entry.paths = (
            _present(entry.paths, new_flat) if entry.subresource == subresource else entry.paths
        )
    if changed:
        if mine is None:
            mine = Entry({"manager": manager, "operation": "Update", "subresource": subresource})
            entries.append(mine)
        mine.paths |= changed
        mine.api_version = api_version
        mine.time = rfc3339()
    _store(new, entries)


def apply(
    *,
    live: Obj | None,
    applied: Obj,
    manager: str,
    api_version: str,
    subresource: str,
    force: bool,
    list_type: ListTypeOf,
    status_mode: str,
    conflict_error: Callable[[str, list[Obj]], ApiError],
) -> Obj:
    """Return the new object for a server-side apply of ``applied`` onto ``live``."""
    entries = _entries(live)
    applied_flat = flatten(applied, list_type, status=status_mode)
    applied_paths = set(applied_flat)
    base = clone(live) if live else {}
    live_flat = flatten(base, list_type, status=status_mode) if live else {}
    ident = (manager, "Apply", subresource)
    mine = next((e for e in entries if e.ident() == ident), None)

    conflicts: list[tuple[Entry, Path]] = []
    for entry in entries:
        if entry is mine or entry.subresource != subresource:
            continue
        for path in sorted(entry.paths & applied_paths):
            if path[-1] == ITEM:
                continue
            if path in live_flat and live_flat[path] != applied_flat[path]:
                conflicts.append((entry, path))
    if conflicts and not force:
        raise _conflict(conflicts, conflict_error)
    for entry, path in conflicts:
        entry.paths.discard(path)

    merged = _merge(base, applied, list_type, ())
    previous = set(mine.paths) if mine else set()
    others: set[Path] = set()
    for entry in entries:
        if entry is not mine:
            others |= entry.paths
    other_prefixes = {p[:i] for p in others for i in range(1, len(p) + 1)}
    for path in sorted(previous - applied_paths, key=len, reverse=True):
        target = path[:-1] if path[-1] == ITEM else path
        if path in others or target in other_prefixes:
            continue
        _remove_path(merged, target)

    merged_flat = flatten(merged, list_type, status=status_mode)
    if mine is None:
        mine = Entry({"manager": manager, "operation": "Apply", "subresource": subresource})
        entries.append(mine)
    mine.paths = applied_paths
    mine.api_version = api_version
    mine.time = rfc3339()
    for entry in entries:
        if entry.subresource == subresource:
            entry.paths = _present(entry.paths, merged_flat)
    _store(merged, entries)
    result: Obj = merged
    return result


def _conflict(
    conflicts: list[tuple[Entry, Path]], make: Callable[[str, list[Obj]], ApiError]
) -> ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{e.manager}"'
            + (f" using {e.api_version}" if e.api_version else ""),
            "field": display(p),
        }
        for e, p in conflicts
    ]
    managers = {e.manager for e, _ in conflicts}
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        using = f" using {entry.api_version}" if entry.api_version else ""
        message = (
            f'Apply failed with 1 conflict: conflict with "{entry.manager}"{using}: {display(path)}'
        )
    else:
        lines = []
        for manager in sorted(managers):
            owned = [(e, p) for e, p in conflicts if e.manager == manager]
            using = f" using {owned[0][0].api_version}" if owned[0][0].api_version else ""
            lines.append(
                f'conflicts with "{manager}"{using}:\n'
                + "\n".join(f"- {display(p)}" for _, p in owned)
            )
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return make(message, causes)


def _merge(live: Any, applied: Any, list_type: ListTypeOf, names: tuple[str, ...]) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in applied.items():
            out[key] = _merge(live.get(key), value, list_type, (*names, key))
        return out
    if isinstance(applied, list) and isinstance(live, list):
        kind, keys = list_type(names)
        if kind == "set":
            return list(live) + [v for v in applied if v not in live]
        if kind == "map" and keys:
            out_list = list(live)
            for item in applied:
                ident = _item_key(item, keys)
                index = next(
                    (i for i, v in enumerate(out_list) if _item_key(v, keys) == ident), None
                )
                if index is None:
                    out_list.append(clone(item))
                else:
                    out_list[index] = _merge(out_list[index], item, list_type, names)
            return out_list
    return clone(applied)


def _remove_path(obj: Any, path: Path) -> None:
    """Delete the field/item/member at ``path`` from ``obj`` (in place), if present."""
    if not path:
        return
    parent: Any = obj
    for i, part in enumerate(path[:-1]):
        parent = _step(parent, part, path[i + 1] if i + 1 < len(path) else "")
        if parent is None:
            return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        keys = json.loads(last[2:])
        parent[:] = [
            v
            for v in parent
            if not (isinstance(v, dict) and all(v.get(k) == w for k, w in keys.items()))
        ]
    elif last.startswith("v:") and isinstance(parent, list):
        value = json.loads(last[2:])
        parent[:] = [v for v in parent if v != value]


def _step(node: Any, part: str, _next: str) -> Any:
    if part.startswith("f:"):
        return node.get(part[2:]) if isinstance(node, dict) else None
    if part.startswith("k:") and isinstance(node, list):
        keys = json.loads(part[2:])
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in keys.items()):
                return item
    return None


def strip_times(obj: Obj) -> Obj:
    """A view of ``obj`` whose managedFields ignore ``time`` (for no-op detection)."""
    md = obj.get("metadata") or {}
    fields = md.get("managedFields")
    if not fields:
        return obj
    view = dict(obj)
    view["metadata"] = dict(md)
    view["metadata"]["managedFields"] = [
        {k: v for k, v in e.items() if k != "time"} for e in fields
    ]
    return view
