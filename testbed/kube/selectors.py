"""Label and field selectors, parsed with the grammar of apimachinery's ``labels`` and ``fields``.

Label selectors support every operator kubectl can send (``=``, ``==``, ``!=``, ``in``, ``notin``,
existence, ``!`` non-existence, ``gt``/``lt``); field selectors support ``=``, ``==``, ``!=`` over
the labels each kind registers, and any other label is the real server's 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from testbed.kube.errors import ApiError, bad_request
from testbed.kube.meta import Obj

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),]+)")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                have, want = int(str(value)), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == "gt" else have < want
        return False


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _parse_error(text: str, detail: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {detail}")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``labelSelector``; a syntax error is the apiserver's 400."""
    if not text or not text.strip():
        return LabelSelector()
    tokens = [t for t in _TOKEN.findall(text) if t]
    if "".join(tokens) != re.sub(r"\s+", "", text):
        raise _parse_error(text, f"found unexpected characters in {text!r}")
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise _parse_error(text, "found '', expected: identifier")
        tok = tokens[i]
        i += 1
        return str(tok)

    while i < len(tokens):
        tok = take()
        if tok == "!":
            key = take()
            reqs.append(Requirement(_check_key(key), "!"))
        else:
            key = _check_key(tok)
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = take()
                if op in ("=", "=="):
                    reqs.append(Requirement(key, "=", (_check_value(_value(tokens, i)),)))
                    i += 1 if i < len(tokens) and tokens[i] != "," else 0
                elif op == "!=":
                    reqs.append(Requirement(key, "!=", (_check_value(_value(tokens, i)),)))
                    i += 1 if i < len(tokens) and tokens[i] != "," else 0
                elif op in ("in", "notin"):
                    if take() != "(":
                        raise _parse_error(text, f"found '{tokens[i - 1]}', expected: '('")
                    values: list[str] = []
                    while True:
                        nxt = take()
                        if nxt == ")":
                            break
                        if nxt == ",":
                            if not values or tokens[i - 2] == ",":
                                values.append("")
                            continue
                        values.append(_check_value(nxt))
                    reqs.append(Requirement(key, op, tuple(values)))
                elif op in ("gt", "lt"):
                    value = take()
                    if not value.lstrip("-").isdigit():
                        raise _parse_error(
                            text, f"for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                        )
                    reqs.append(Requirement(key, op, (value,)))
                else:
                    raise _parse_error(
                        text, f"found '{op}', expected: '=', '!=', '==', 'in', notin'"
                    )
        if i < len(tokens):
            if tokens[i] != ",":
                raise _parse_error(text, f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
            if i >= len(tokens):
                raise _parse_error(text, "found '', expected: identifier")
    return LabelSelector(tuple(reqs))


def _value(tokens: list[str], i: int) -> str:
    if i >= len(tokens) or tokens[i] == ",":
        return ""
    return tokens[i]


def _check_key(key: str) -> str:
    if key in ("(", ")", ",", "=", "==", "!=", "!"):
        raise bad_request(f"unable to parse requirement: found '{key}', expected: identifier")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise bad_request(
            f'unable to parse requirement: values[0][{value}]: Invalid value: "{value}": a valid '
            "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return value


def selector_from_dict(selector: Obj | None) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels + matchExpressions), as workloads carry."""
    if not selector:
        return LabelSelector()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(
            expr.get("operator", ""), "exists"
        )
        reqs.append(Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


def selector_string(selector: Obj | None) -> str:
    """The selector as ``kubectl`` / Scale.status.selector print it."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{expr['key']} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({values})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)


@dataclass(frozen=True)
class FieldRequirement:
    label: str
    getter: Callable[[Obj], str]
    negate: bool
    value: str

    def matches(self, obj: Obj) -> bool:
        return (self.getter(obj) == self.value) != self.negate


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Obj) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact_name(self) -> str | None:
        """The name of a ``metadata.name=X`` selector (RBAC treats it as a named request)."""
        for req in self.requirements:
            if req.label == "metadata.name" and not req.negate:
                return req.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(
    text: str | None, lookup: Callable[[str], Callable[[Obj], str] | None]
) -> FieldSelector:
    """Parse ``fieldSelector`` against the labels a kind supports (``lookup``)."""
    if not text or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        match = re.match(r"^((?:\\.|[^!=])*)(!=|==|=)(.*)$", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        label, op, value = match.group(1).strip(), match.group(2), _unescape(match.group(3))
        getter = lookup(label)
        if getter is None:
            raise bad_request(f"field label not supported: {label}")
        reqs.append(FieldRequirement(label, getter, op == "!=", value))
    return FieldSelector(tuple(reqs))
