"""Structural OpenAPI v3 schemas of CustomResourceDefinitions: defaulting, pruning, validation.

The apiextensions-apiserver applies these in this order on every write of a custom resource:
prune unknown fields (unless ``x-kubernetes-preserve-unknown-fields``), apply ``default``s, then
validate. With ``fieldValidation=Strict`` an unknown field is an error instead of being pruned.
"""

from __future__ import annotations

import json
import re
from typing import Any

from testbed.kube.errors import FieldError, invalid_value, not_supported, required
from testbed.kube.meta import clone

Schema = dict[str, Any]
_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def _child(schema: Schema, key: str) -> Schema | None:
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        child: Schema = props[key]
        return child
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    if extra is True:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return None


def prune(value: Any, schema: Schema, path: str, unknown: list[str], *, root: bool = False) -> Any:
    """Drop fields the schema does not declare; their paths are appended to ``unknown``."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource"):
            root = True
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        out: dict[str, Any] = {}
        for key, sub in value.items():
            child_path = f"{path}.{key}" if path else key
            if root and key in _ROOT_KEEP:
                out[key] = sub
                continue
            child = _child(schema, key)
            if child is None:
                if preserve:
                    out[key] = sub
                else:
                    unknown.append(child_path)
                continue
            out[key] = prune(sub, child, child_path, unknown)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [prune(v, items, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    return value


def default(value: Any, schema: Schema, *, root: bool = False) -> Any:
    """Fill in ``default``s for missing properties, recursively (values are not mutated)."""
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties") or {}
        for key, child in props.items():
            if root and key in _ROOT_KEEP:
                continue
            if key not in out and isinstance(child, dict) and "default" in child:
                out[key] = clone(child["default"])
        for key, sub in list(out.items()):
            if root and key in _ROOT_KEEP:
                continue
            child = _child(schema, key)
            if child is not None and sub is not None:
                out[key] = default(sub, child)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [default(v, items) for v in value]
    return value


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    want = _TYPES.get(expected)
    return want is None or isinstance(value, want)


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def validate(value: Any, schema: Schema, path: str, *, root: bool = False) -> list[FieldError]:
    """The subset of OpenAPI validation the apiextensions server applies that we care about."""
    errors: list[FieldError] = []
    shown = path or "<root>"
    if value is None:
        if schema.get("nullable") or not path:
            return errors
        if schema.get("type"):
            errors.append(
                invalid_value(
                    shown, "null", f'{shown} in body must be of type {schema["type"]}: "null"'
                )
            )
        return errors
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errors.append(
                invalid_value(
                    shown,
                    _go_type(value),
                    f'{shown} in body must be of type integer,string: "{_go_type(value)}"',
                )
            )
        return errors
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        errors.append(
            invalid_value(
                shown,
                _go_type(value),
                f'{shown} in body must be of type {expected}: "{_go_type(value)}"',
            )
        )
        return errors
    if "enum" in schema and value not in schema["enum"]:
        errors.append(
            not_supported(
                shown,
                value,
                tuple(json.dumps(v) if not isinstance(v, str) else v for v in schema["enum"]),
            )
        )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError("TooLong", shown, f"may not be more than {schema['maxLength']} bytes")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                invalid_value(
                    shown,
                    value,
                    f"{shown} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(
                invalid_value(shown, value, f"{shown} in body should match '{schema['pattern']}'")
            )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(
                invalid_value(
                    shown,
                    value,
                    f"{shown} in body should be greater than or equal to {schema['minimum']}",
                )
            )
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(
                invalid_value(
                    shown,
                    value,
                    f"{shown} in body should be less than or equal to {schema['maximum']}",
                )
            )
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                FieldError("TooMany", shown, f"must have at most {schema['maxItems']} items")
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                invalid_value(
                    shown,
                    len(value),
                    f"{shown} in body should have at least {schema['minItems']} items",
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                errors += validate(item, items, f"{path}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                errors.append(required(f"{path}.{key}" if path else key))
        for key, sub in value.items():
            if root and key in _ROOT_KEEP:
                continue
            child = _child(schema, key)
            if child is not None:
                errors += validate(sub, child, f"{path}.{key}" if path else key)
    return errors


def list_type(schema: Schema | None, path: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """``x-kubernetes-list-type`` / ``list-map-keys`` of the array at ``path`` (default atomic)."""
    node = schema
    for part in path:
        if node is None:
            break
        if node.get("type") == "array":
            node = node.get("items")
            if node is None:
                break
        node = _child(node, part)
    if node is None:
        return ("atomic", ())
    kind = node.get("x-kubernetes-list-type", "atomic")
    if kind == "map":
        return ("map", tuple(node.get("x-kubernetes-list-map-keys") or ()))
    if kind == "set":
        return ("set", ())
    return ("atomic", ())


def json_path(obj: Any, expr: str) -> Any:
    """Evaluate the simple JSONPath subset printer columns use (``.a.b``, ``.a[0]``, filters)."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    expr = expr.lstrip("$")
    tokens = re.findall(
        r"\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([\w.]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]", expr
    )
    cur = obj
    for name, index, filter_key, filter_value in tokens:
        if cur is None:
            return None
        if name:
            cur = cur.get(name) if isinstance(cur, dict) else None
        elif index:
            cur = cur[int(index)] if isinstance(cur, list) and int(index) < len(cur) else None
        else:
            found = None
            for item in cur if isinstance(cur, list) else []:
                probe: Any = item
                for part in filter_key.split("."):
                    probe = probe.get(part) if isinstance(probe, dict) else None
                if str(probe) == filter_value:
                    found = item
                    break
            cur = found
    return cur
