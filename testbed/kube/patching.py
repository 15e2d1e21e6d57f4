"""PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch, JSON patch (RFC 6902).

Strategic merge patch is what kubectl's default ``patch``, client-side ``apply``, ``rollout
restart`` and ``set image`` send, and what kubernetes-asyncio sends for dict bodies on typed
APIs. Its list semantics come from the Go types' ``patchMergeKey``/``patchStrategy`` tags, which
here come from ``ResourceType.list_type``. The directives handled are ``$patch``
(replace/merge/delete), ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>`` and
``$retainKeys``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testbed.kube.errors import ApiError, bad_request
from testbed.kube.meta import clone

ListTypeOf = Callable[[tuple[str, ...]], tuple[str, tuple[str, ...]]]

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
APPLY_CBOR = "application/apply-patch+cbor"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, ``null`` deletes, everything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge patch ------------------------------------------------------------------


def strategic_merge(
    target: Any, patch: Any, list_type: ListTypeOf, path: tuple[str, ...] = ()
) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if not _is_directive(k)}
    base = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    deletes: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value or []
        elif key.startswith("$deleteFromPrimitiveList/"):
            deletes[key.split("/", 1)[1]] = value or []
    for key, value in patch.items():
        if _is_directive(key):
            continue
        child_path = (*path, key)
        if value is None:
            base.pop(key, None)
        elif isinstance(value, list):
            base[key] = _merge_list(base.get(key), value, list_type, child_path)
        elif isinstance(value, dict):
            merged = strategic_merge(base.get(key), value, list_type, child_path)
            if merged is None:
                base.pop(key, None)
            else:
                base[key] = merged
        else:
            base[key] = value
    for key, values in deletes.items():
        if isinstance(base.get(key), list):
            base[key] = [v for v in base[key] if v not in values]
    for key, order in orders.items():
        if isinstance(base.get(key), list):
            base[key] = _apply_order(base[key], order, list_type((*path, key)))
    if isinstance(retain, list):
        base = {k: v for k, v in base.items() if k in retain}
    return base


def _is_directive(key: str) -> bool:
    return key.startswith("$")


def _merge_list(
    current: Any, patch: list[Any], list_type: ListTypeOf, path: tuple[str, ...]
) -> Any:
    current_list = list(current) if isinstance(current, list) else []
    if (
        patch
        and isinstance(patch[0], dict)
        and patch[0].get("$patch") == "replace"
        and len(patch[0]) == 1
    ):
        return [clone(v) for v in patch[1:]]
    strategy, keys = list_type(path)
    if strategy == "set":
        out = list(current_list)
        for value in patch:
            if value not in out:
                out.append(value)
        return out
    if strategy != "map" or not keys:
        return [clone(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    key = keys[0]  # strategic merge patch merges on the single patchMergeKey
    out = [clone(v) for v in current_list]
    for item in patch:
        if not isinstance(item, dict):
            continue
        want = item.get(key)
        index = next(
            (i for i, v in enumerate(out) if isinstance(v, dict) and v.get(key) == want), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append({k: clone(v) for k, v in item.items() if not _is_directive(k)})
        else:
            out[index] = strategic_merge(out[index], item, list_type, path)
    return out


def _apply_order(
    values: list[Any], order: list[Any], strategy: tuple[str, tuple[str, ...]]
) -> list[Any]:
    kind, keys = strategy
    if kind == "map" and keys:
        key = keys[0]

        def ident(v: Any) -> Any:
            return v.get(key) if isinstance(v, dict) else v

        wanted = [o.get(key) if isinstance(o, dict) else o for o in order]
    else:

        def ident(v: Any) -> Any:
            return v

        wanted = list(order)
    ranked = [v for w in wanted for v in values if ident(v) == w]
    rest = [v for v in values if ident(v) not in wanted]
    return ranked + rest


# -- JSON patch -------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _op_error(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _op_error(message: str) -> ApiError:
    # The apiserver wraps a failed JSON patch operation as a 422 without details.
    return ApiError(422, "Invalid", message)


def _parent(doc: Any, parts: list[str], path: str, op: str) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise _op_error(
                f'{op} operation does not apply: doc is missing path: "{path}": missing value'
            )
    return cur, parts[-1]


def _get_at(doc: Any, path: str, op: str) -> Any:
    cur = doc
    for part in _pointer(path):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise _op_error(
                f'{op} operation does not apply: doc is missing path: "{path}": missing value'
            )
    return cur


def _remove(doc: Any, path: str, op: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise _op_error(f"{op} operation does not apply: cannot remove the document root")
    parent, last = _parent(doc, parts, path, op)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _op_error(f"{op} operation does not apply: doc is missing key: {path}")


def _add(doc: Any, path: str, value: Any, op: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return clone(value)
    parent, last = _parent(doc, parts, path, op)
    if isinstance(parent, dict):
        parent[last] = clone(value)
    elif isinstance(parent, list):
        if last == "-":
            parent.append(clone(value))
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), clone(value))
        else:
            raise _op_error(
                f'{op} operation does not apply: doc is missing path: "{path}": missing value'
            )
    else:
        raise _op_error(
            f'{op} operation does not apply: doc is missing path: "{path}": missing value'
        )
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 with the apiserver's error answers (400 for a non-array body)."""
    if not isinstance(ops, list):
        kind = "object" if isinstance(ops, dict) else type(ops).__name__
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    doc = clone(target)
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Operation")
        name = op.get("op")
        path = op.get("path", "")
        if not isinstance(path, str):
            raise _op_error(f"{name} operation does not apply: path is not a string")
        if name == "add":
            doc = _add(doc, path, op.get("value"), "add")
        elif name == "remove":
            _remove(doc, path, "remove")
        elif name == "replace":
            parts = _pointer(path)
            if not parts:
                doc = clone(op.get("value"))
                continue
            parent, last = _parent(doc, parts, path, "replace")
            if isinstance(parent, dict) and last in parent:
                parent[last] = clone(op.get("value"))
            elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
                parent[int(last)] = clone(op.get("value"))
            else:
                raise _op_error(f"replace operation does not apply: doc is missing key: {path}")
        elif name == "move":
            value = _remove(doc, op.get("from", ""), "move")
            doc = _add(doc, path, value, "move")
        elif name == "copy":
            doc = _add(doc, path, _get_at(doc, op.get("from", ""), "copy"), "copy")
        elif name == "test":
            if _get_at(doc, path, "test") != op.get("value"):
                raise _op_error(f"testing value {path} failed: test failed")
        else:
            raise _op_error(f"Unexpected kind: {name}")
    return doc
