"""ACL policies: the HCL subset services write, and Vault's rule for which path rule applies.

A policy is a list of ``path "pattern" { capabilities = [...] }`` blocks. Patterns may end in
``*`` (prefix) and use ``+`` for exactly one path segment. All of a token's policies are merged
per pattern (capabilities unioned; ``deny`` wins over everything); then for a request path an
exact pattern wins, otherwise the *most specific* matching glob by Vault's documented priority
order. Capabilities of less specific globs do not add up, which is what makes "deny wins" and
"a narrower rule overrides a broader one" both hold.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from testbed.vault.errors import VaultError
from testbed.vault.storage import Storage

#: ``subscribe`` (with ``subscribe_event_types``, the event type globs it allows) gates event
#: notifications.
CAPABILITIES = frozenset({
    "create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe",
})
# The pre-0.9 ``policy = "..."`` shorthand, still accepted by Vault.
_LEGACY = {
    "deny": frozenset({"deny"}),
    "read": frozenset({"read", "list"}),
    "write": frozenset({"create", "read", "update", "delete", "list"}),
    "sudo": frozenset({"create", "read", "update", "delete", "list", "sudo"}),
}

DEFAULT_POLICY = """\
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its resultant ACL from all policies
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}
"""


@dataclass(frozen=True)
class PathRule:
    pattern: str
    capabilities: frozenset[str]
    #: Event type globs a ``subscribe`` here covers; none: no events at all (as in Vault).
    subscribe_event_types: tuple[str, ...] = ()


_TOKEN = re.compile(
    r'\s+|#[^\n]*|//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.-]*|-?\d+|[{}\[\]=,]',
    re.DOTALL,
)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise VaultError(
                400, f"failed to parse policy: unexpected character {text[position]!r}"
            )
        token = match.group(0)
        position = match.end()
        if token.isspace() or token.startswith(("#", "//", "/*")):
            continue
        tokens.append(token)
    return tokens


class _Parser:
    """Recursive descent over the token list: blocks, ``key = value``, lists, nested maps."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0

    def fail(self, message: str) -> VaultError:
        return VaultError(400, f"failed to parse policy: {message}")

    def next(self) -> str:
        if self.position >= len(self.tokens):
            raise self.fail("unexpected end of policy")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def expect(self, expected: str) -> None:
        token = self.next()
        if token != expected:
            raise self.fail(f"expected {expected!r}, got {token!r}")

    def value(self) -> object:
        token = self.next()
        if token.startswith('"'):
            return _unquote(token)
        if token == "[":
            items: list[object] = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.next()
            self.next()
            return items
        if token == "{":
            self.body()
            return None
        return token  # bare numbers and booleans: not used by the subset, skipped

    def body(self) -> dict[str, object]:
        """Attributes of a ``{ ... }`` block whose ``{`` was consumed; nested maps are skipped."""
        attributes: dict[str, object] = {}
        while self.peek() != "}":
            key = self.next()
            if key.startswith('"'):
                key = _unquote(key)
            if self.peek() == "=":
                self.next()
            attributes[key] = self.value()
            if self.peek() == ",":
                self.next()
        self.next()
        return attributes

    def policy(self) -> list[PathRule]:
        rules: list[PathRule] = []
        while self.peek() is not None:
            keyword = self.next()
            if keyword != "path":
                raise self.fail(f"unsupported top-level key {keyword!r}")
            pattern = self.next()
            if not pattern.startswith('"'):
                raise self.fail("path must be followed by a quoted pattern")
            self.expect("{")
            rules.append(_rule(_unquote(pattern), self.body()))
        return rules


def _unquote(token: str) -> str:
    return token[1:-1].replace('\\"', '"').replace("\\\\", "\\")


def _rule(pattern: str, attributes: dict[str, object]) -> PathRule:
    capabilities: set[str] = set()
    listed = attributes.get("capabilities")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
            raise VaultError(400, "failed to parse policy: capabilities must be a list of strings")
        for capability in listed:
            if capability not in CAPABILITIES:
                raise VaultError(
                    400,
                    f'failed to parse policy: path "{pattern}": invalid capability "{capability}"',
                )
            capabilities.add(str(capability))
    legacy = attributes.get("policy")
    if isinstance(legacy, str):
        if legacy not in _LEGACY:
            raise VaultError(400, f'failed to parse policy: path "{pattern}": invalid policy')
        capabilities |= _LEGACY[legacy]
    if "deny" in capabilities:
        capabilities = {"deny"}
    event_types = attributes.get("subscribe_event_types") or []
    if not isinstance(event_types, list) or not all(isinstance(t, str) for t in event_types):
        raise VaultError(400, "failed to parse policy: subscribe_event_types must be a list of "
                         "strings")
    return PathRule(pattern=pattern.lstrip("/"), capabilities=frozenset(capabilities),
                    subscribe_event_types=tuple(str(t) for t in event_types))


def parse_policy(text: str) -> list[PathRule]:
    """The path rules of an HCL (or HCL-as-JSON) policy; 400 ``failed to parse policy: …``."""
    if text.lstrip().startswith("{"):
        return _parse_json_policy(text)
    return _Parser(text).policy()


def _parse_json_policy(text: str) -> list[PathRule]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise VaultError(400, f"failed to parse policy: {error}") from None
    paths = document.get("path") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        raise VaultError(400, "failed to parse policy: no path blocks")
    rules: list[PathRule] = []
    for pattern, attributes in paths.items():
        if not isinstance(attributes, dict):
            raise VaultError(400, f'failed to parse policy: path "{pattern}" must be an object')
        rules.append(_rule(str(pattern), attributes))
    return rules


def _priority(pattern: str) -> tuple[int, int, int, int, str]:
    """Sort key: a higher key is the more specific pattern (Vault's documented tie-breakers)."""
    wildcard_positions = [i for i, char in enumerate(pattern) if char in "+*"]
    first_wildcard = wildcard_positions[0] if wildcard_positions else len(pattern)
    return (
        first_wildcard,  # a wildcard earlier is lower priority
        0 if pattern.endswith("*") else 1,  # ending in * is lower priority
        -pattern.count("+"),  # more + segments is lower priority
        len(pattern),  # shorter is lower priority
        pattern,  # lexicographically smaller is lower priority
    )


def _glob_regex(pattern: str) -> re.Pattern[str]:
    prefix = pattern.endswith("*")
    body = pattern[:-1] if prefix else pattern
    segments = [r"[^/]+" if part == "+" else re.escape(part) for part in body.split("/")]
    return re.compile("/".join(segments) + (".*" if prefix else ""), re.DOTALL)


class Acl:
    """The merged rules of one set of policies, answering "which capabilities on this path"."""

    def __init__(self, rules: Iterable[PathRule]) -> None:
        merged: dict[str, frozenset[str]] = {}
        #: pattern -> event type globs, unioned over policies as Vault merges them.
        self._event_types: dict[str, tuple[str, ...]] = {}
        for rule in rules:
            combined = merged.get(rule.pattern, frozenset()) | rule.capabilities
            merged[rule.pattern] = frozenset({"deny"}) if "deny" in combined else combined
            known = self._event_types.get(rule.pattern, ())
            self._event_types[rule.pattern] = known + tuple(
                t for t in rule.subscribe_event_types if t not in known)
        self._exact = {p: c for p, c in merged.items() if "*" not in p and "+" not in p}
        globs = [(p, c) for p, c in merged.items() if p not in self._exact]
        globs.sort(key=lambda item: _priority(item[0]), reverse=True)
        self._globs = [(_glob_regex(p), c) for p, c in globs]
        self._glob_patterns = [(regex, p) for (regex, _), (p, _) in zip(self._globs, globs,
                                                                          strict=True)]
        self._cache: dict[str, frozenset[str]] = {}

    def capabilities(self, path: str) -> frozenset[str]:
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        result = self._exact.get(path)
        if result is None:
            result = next(
                (caps for regex, caps in self._globs if regex.fullmatch(path)), frozenset()
            )
        if len(self._cache) < 10_000:
            self._cache[path] = result
        return result

    def subscribe_event_types(self, path: str) -> tuple[str, ...]:
        """The event type globs of the rule that applies to ``path`` (the same rule as
        :meth:`capabilities`)."""
        if path in self._exact:
            return self._event_types.get(path, ())
        for regex, pattern in self._glob_patterns:
            if regex.fullmatch(path):
                return self._event_types.get(pattern, ())
        return ()

    def allows(self, path: str, capability: str) -> bool:
        capabilities = self.capabilities(path)
        return "deny" not in capabilities and capability in capabilities


class PolicyStore:
    """Named ACL policies kept in storage; ``root`` is implicit and ``default`` always exists."""

    def __init__(self, *, storage: Storage) -> None:
        self._storage = storage
        stored = storage.attach("policies", self._dump)
        self._texts: dict[str, str] = dict(stored or {})
        self._texts.setdefault("default", DEFAULT_POLICY)
        self._rules = {name: parse_policy(text) for name, text in self._texts.items()}
        self._generation = 0

    def _dump(self) -> dict[str, str]:
        return dict(self._texts)

    def names(self) -> list[str]:
        return sorted([*self._texts, "root"])

    def get(self, name: str) -> str | None:
        if name == "root":
            return ""
        return self._texts.get(name)

    def put(self, name: str, text: str) -> None:
        name = name.lower()
        if name == "root":
            raise VaultError(400, 'cannot update "root" policy')
        rules = parse_policy(text)
        self._texts[name] = text
        self._rules[name] = rules
        self._changed()

    def delete(self, name: str) -> None:
        name = name.lower()
        if name in ("root", "default"):
            raise VaultError(400, f'cannot delete "{name}" policy')
        if self._texts.pop(name, None) is not None:
            self._rules.pop(name, None)
            self._changed()

    def _changed(self) -> None:
        self._generation += 1  # part of the ACL cache key: old entries are never hit again
        self._storage.changed()

    def acl(self, names: Iterable[str]) -> Acl:
        return self._acl(frozenset(names), self._generation)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one store per emulated cluster, cleared on change
    def _acl(self, names: frozenset[str], generation: int) -> Acl:
        del generation  # part of the cache key only
        return Acl(rule for name in sorted(names) for rule in self._rules.get(name, []))
