"""The parts every spec parser shares: field readers that record problems, and their messages.

Each kind's parser (:mod:`syncd.specs`, :mod:`syncd.dynamic_specs`, :mod:`syncd.pki_specs`)
reads its API object through one :class:`Reader`, which never raises on a bad field: it notes a
:class:`Problem` with the field's path and reads on, so that :meth:`Reader.raise_for` reports
everything wrong with the object in one :class:`SpecError` and a person fixes a manifest in one
round. The messages are written here once, so the same mistake reads the same in every kind.

The three kinds that write a Secret share their identity and Vault login fields; they hold them
as one :class:`SecretMeta` (:class:`HasSecretMeta` reads them through, so ``spec.namespace``
keeps working wherever a spec is used).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from plumbing.kube import Resource
from syncd.durations import DurationError, parse_duration

# --- errors -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One thing wrong with one field."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(Exception):
    """Everything wrong with one object (``obj`` is e.g. ``VaultStaticSecret app/web``)."""

    def __init__(self, *, obj: str, problems: tuple[Problem, ...]) -> None:
        self.obj = obj
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.obj} is invalid: " + "; ".join(str(p) for p in self.problems)


def frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    # Most are empty: one shared empty mapping (parsed specs are kept, syncd.spec_cache).
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY


_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectRef:
    """A namespaced object; a spec's ``name`` or ``namespace/name``, resolved."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# --- quoting what is refused ---------------------------------------------------------------

#: A refusal quotes what it refuses, but not at any length: a 70 kB value quoted in full would
#: make the condition (at most 32 KiB) unwritable, and helps no one.
_LONGEST_WORD = 320
_LONG_WORD = re.compile(rf"\S{{{_LONGEST_WORD + 1},}}")
_LONG_KEY = re.compile(rf"\[([^\]]{{{_LONGEST_WORD + 1},}})\]")


def _elided(text: str) -> str:
    return f"{text[:40]}...{text[-8:]} ({len(text)} characters)"


def shorten(message: str) -> str:
    """``message`` with every word over 320 characters (a Secret key has at most 253) cut to
    its ends and its length."""
    return _LONG_WORD.sub(lambda m: _elided(m[0]), message)


def _shorten_keys(path: str) -> str:
    """A field path whose map keys (``labels[...]``) are cut as :func:`shorten` cuts words."""
    return _LONG_KEY.sub(lambda m: f"[{_elided(m[1])}]", path)


# --- field readers ------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "null"


class Reader:
    """Typed reads of a plain mapping that record problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path=_shorten_keys(path), message=shorten(message)))

    def mapping(
        self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> Mapping[str, Any] | None:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            if required:
                self.fail(where, "is required")
            return None
        if not isinstance(value, Mapping):
            self.fail(where, f"must be an object, not {json_type(value)}")
            return None
        return value

    def string(
        self, parent: Mapping[str, Any], key: str, path: str, *,
        required: bool = False, default: str | None = None, hint: str = "",
    ) -> str | None:
        """The string at ``key``; an empty string counts as unset, as in VSO (omitempty)."""
        where, value = _join(path, key), parent.get(key)
        if value is None or value == "":
            if required:
                self.fail(where, "is required" + (f" ({hint})" if hint else ""))
            return default
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {json_type(value)}")
            return default
        return value

    def boolean(self, parent: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(_join(path, key), f"must be true or false, not {json_type(value)}")
            return default
        return value

    def integer(
        self, parent: Mapping[str, Any], key: str, path: str, *, default: int, minimum: int
    ) -> int:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, not {json_type(value)}")
            return default
        if value < minimum:
            self.fail(where, f"must be at least {minimum}, got {value}")
            return default
        return value

    def choice(
        self, parent: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], *,
        default: str | None = None,
    ) -> str | None:
        value = self.string(parent, key, path, required=default is None)
        if value is None:
            return default
        if value not in choices:
            self.fail(_join(path, key), f"unknown value {value!r}: use one of "
                      + ", ".join(choices))
            return default
        return value

    def string_list(self, parent: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(where, f"must be a list of strings, not {json_type(value)}")
            return None
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.fail(f"{where}[{i}]", f"must be a string, not {json_type(item)}")
        return tuple(out)

    def string_map(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(where, f"must be a map of strings, not {json_type(value)}")
            return {}
        out = {}
        for k, v in value.items():
            if isinstance(v, str):
                out[k] = v
            else:
                self.fail(f"{where}[{k}]", f"must be a string, not {json_type(v)} "
                          "(quote numbers and booleans in YAML)")
        return out

    def items(self, parent: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """The elements of a list of objects, each with its path."""
        where, value = _join(path, key), parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"must be a list, not {json_type(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append((f"{where}[{i}]", item))
            else:
                self.fail(f"{where}[{i}]", f"must be an object, not {json_type(item)}")
        return out

    # --- readers of values with a syntax of their own --------------------------------------

    def name(self, parent: Mapping[str, Any], key: str, path: str, *,
             required: bool = False, hint: str = "") -> str | None:
        """An object name (a DNS subdomain); None when unset or invalid."""
        value = self.string(parent, key, path, required=required, hint=hint)
        if value is not None:
            problem = subdomain_problem(value)
            if problem:
                self.fail(_join(path, key), problem)
                return None
        return value

    def ref(self, parent: Mapping[str, Any], key: str, path: str, *,
            namespace: str) -> ObjectRef | None:
        """``name`` (in ``namespace``) or ``namespace/name``; None when unset."""
        value = self.string(parent, key, path)
        if value is None:
            return None
        where = _join(path, key)
        parts = value.split("/")
        if len(parts) > 2 or not all(parts):
            self.fail(where, f"invalid reference {value!r}: use <name> or <namespace>/<name>")
            return None
        ref_ns, ref_name = (parts[0], parts[1]) if len(parts) == 2 else (namespace, parts[0])
        problem = (namespace_problem(ref_ns) if len(parts) == 2 else None) or subdomain_problem(
            ref_name)
        if problem:
            self.fail(where, problem)
            return None
        return ObjectRef(namespace=ref_ns, name=ref_name)

    def vault_path(self, parent: Mapping[str, Any], key: str, path: str, *, hint: str,
                   required: bool = True) -> str:
        """A mount or secret path, without leading or trailing slashes ("" when unset)."""
        where = _join(path, key)
        text = self.string(parent, key, path, required=required, hint=hint)
        if text is None:
            return ""
        value = text.strip("/")
        if not value:
            self.fail(where, f"must not be only slashes ({hint})")
            return ""
        segments = value.split("/")
        if any(s in ("", ".", "..") for s in segments):
            self.fail(where, f"{value!r} has an empty, '.' or '..' segment")
        elif any(c in value for c in "?#\0\r\n"):
            self.fail(where, f"{value!r} must not contain '?', '#' or control characters")
        return value

    def duration(self, parent: Mapping[str, Any], key: str, path: str, *,
                 default: str | None) -> float | None:
        """A Go duration in seconds (at least 1 s); None when unset or invalid."""
        text = self.string(parent, key, path, default=default)
        if text is None:
            return None
        try:
            seconds = parse_duration(text)
        except DurationError as exc:
            self.fail(_join(path, key), str(exc))
            return None
        if seconds < 1:
            self.fail(_join(path, key), f"{text!r} is too short: use at least 1s")
            return None
        return seconds

    # --- the object as a whole -------------------------------------------------------------

    def metadata(self, obj: Mapping[str, Any], kind: Resource) -> tuple[
            str, str, int, str, Mapping[str, Any]]:
        """Namespace, name, generation, uid and the metadata mapping of ``obj``."""
        found = obj.get("kind")
        if found is not None and found != kind.kind:
            self.fail("kind", f"expected {kind.kind}, got {found!r}")
        meta = self.mapping(obj, "metadata", "", required=True) or {}
        name = self.string(meta, "name", "metadata", required=True) or "<unnamed>"
        namespace = self.string(meta, "namespace", "metadata", required=True) or "<no namespace>"
        generation = self.integer(meta, "generation", "metadata", default=0, minimum=0)
        uid = self.string(meta, "uid", "metadata", default="") or ""
        return namespace, name, generation, uid, meta

    def secret_meta(self, obj: Mapping[str, Any], kind: Resource) -> tuple[
            SecretMeta, Mapping[str, Any]]:
        """The :class:`SecretMeta` and the ``spec`` mapping of a kind that writes a Secret."""
        namespace, name, generation, uid, meta = self.metadata(obj, kind)
        spec = self.mapping(obj, "spec", "", required=True) or {}
        return SecretMeta(
            namespace=namespace,
            name=name,
            generation=generation,
            uid=uid,
            labels=frozen(self.string_map(meta, "labels", "metadata")),
            annotations=frozen(self.string_map(meta, "annotations", "metadata")),
            vault_auth_ref=self.ref(spec, "vaultAuthRef", "spec", namespace=namespace),
            vault_namespace=self.string(spec, "namespace", "spec"),
        ), spec

    def raise_for(self, kind: Resource, namespace: str, name: str) -> None:
        """Raise :class:`SpecError` with every problem found, if any."""
        if self.problems:
            raise SpecError(obj=f"{kind.kind} {namespace}/{name}", problems=tuple(self.problems))


# --- syntax of names ----------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def subdomain_problem(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return (f"{value!r} is not a valid name: use at most 253 lowercase letters, digits, "
                "'-' and '.', starting and ending with a letter or digit")
    return None


def namespace_problem(value: str) -> str | None:
    if len(value) > 63 or not _DNS_LABEL_RE.fullmatch(value):
        return (f"{value!r} is not a valid namespace: use at most 63 lowercase letters, "
                "digits and '-', starting and ending with a letter or digit")
    return None


def qualified_name_problem(value: str) -> str | None:
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or subdomain_problem(prefix)):
        return f"{value!r}: the prefix before '/' must be a DNS subdomain, e.g. example.com"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (f"{value!r}: the name must be at most 63 letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit")
    return None


def label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
        return (f"label value {value!r} must be empty or at most 63 letters, digits, '-', '_' "
                "and '.', starting and ending with a letter or digit")
    return None


def check_labels(r: Reader, labels: Mapping[str, str], where: str) -> None:
    for k, v in labels.items():
        problem = qualified_name_problem(k) or label_value_problem(v)
        if problem:
            r.fail(f"{where}[{k}]", problem)


def check_annotations(r: Reader, annotations: Mapping[str, str], where: str) -> None:
    for k in annotations:
        problem = qualified_name_problem(k)
        if problem:
            r.fail(f"{where}[{k}]", problem)
    size = sum(len(k) + len(v.encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        r.fail(where, f"annotations total {size} bytes, over Kubernetes' limit of "
               f"{_ANNOTATIONS_MAX_BYTES}")


def check_headers(r: Reader, headers: Mapping[str, str], where: str) -> None:
    for k, v in headers.items():
        if not _HEADER_NAME.fullmatch(k):
            r.fail(f"{where}[{k}]", "is not a valid HTTP header name")
        elif k.lower() == "x-vault-token":
            r.fail(f"{where}[{k}]", "a Vault token must not sit in a resource; the VaultAuth "
                   "logs in and supplies it")
        if any(c in v for c in "\r\n\0"):
            r.fail(f"{where}[{k}]", "a header value must not contain line breaks")


# --- what the kinds that write a Secret share ---------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SecretMeta:
    """Who a VaultStaticSecret, VaultDynamicSecret or VaultPKISecret is, and whose Vault login
    it reads with: the part of the three kinds that is the same field for field."""

    namespace: str
    name: str
    generation: int
    #: A deleted and re-created object starts at generation 1 again; the uid tells.
    uid: str
    #: The object's own labels and annotations: template input, as in VSO.
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    #: None: the ``default`` VaultAuth of syncd's own namespace.
    vault_auth_ref: ObjectRef | None
    vault_namespace: str | None


class HasSecretMeta:
    """The fields of :class:`SecretMeta`, read on the spec that holds it as ``meta``."""

    __slots__ = ()
    meta: SecretMeta

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def generation(self) -> int:
        return self.meta.generation

    @property
    def uid(self) -> str:
        return self.meta.uid

    @property
    def labels(self) -> Mapping[str, str]:
        return self.meta.labels

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.meta.annotations

    @property
    def vault_auth_ref(self) -> ObjectRef | None:
        return self.meta.vault_auth_ref

    @property
    def vault_namespace(self) -> str | None:
        return self.meta.vault_namespace
