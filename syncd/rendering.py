"""Turn one Vault KV read into the ``data`` of a Kubernetes Secret, the way VSO does.

The rules follow VSO's secret data builder, so a VaultStaticSecret moved over from VSO yields
the same bytes:

- A value that is a string is written as its UTF-8 bytes; any other JSON value is written as
  compact JSON, byte for byte what Go's ``json.Marshal`` writes (sorted keys, ``<``, ``>`` and
  ``&`` escaped).
- ``_raw`` holds the JSON of the Vault response's ``data`` object: for kv-v2 that is the whole
  ``{"data": ..., "metadata": ...}``, for kv-v1 the secret itself. ``excludeRaw`` drops it. A
  source key or template named ``_raw`` next to it is an error, as in VSO.
- ``excludes`` then ``includes`` (regular expressions, matched anywhere in the key as Go's
  ``MatchString`` does) filter the *source* keys only: never template outputs, never ``_raw``.
  A template output wins over a source key of the same name.

Templates are Jinja2, not Go ``text/template``, rendered in Jinja's immutable sandbox with
autoescaping off and undefined values as errors. The template input and VSO's equivalents:

==============================================  ===============================================
VSO (Go template)                               vault-syncd (Jinja2)
==============================================  ===============================================
``{{ .Secrets.password }}``                     ``{{ secrets.password }}``
``{{ get .Secrets "api-key" }}``                ``{{ secrets["api-key"] }}``
``{{ .Metadata.custom_metadata.owner }}``       ``{{ metadata.custom_metadata.owner }}``
``{{ .Metadata.version }}``                     ``{{ metadata.version }}``
``{{ .Annotations.x }}``, ``{{ .Labels.x }}``   ``{{ annotations.x }}``, ``{{ labels.x }}``
``{{ .Secrets.x | b64enc }}`` / ``b64dec``      ``{{ secrets.x | b64encode }}`` / ``b64decode``
``{{ .Secrets.x | toJson }}``                   ``{{ secrets.x | tojson }}`` (Go's bytes)
``{{ range $k, $v := .Secrets }}``              ``{% for k, v in secrets | dictsort %}``
``{{ printf "%s:%s" .Secrets.u .Secrets.p }}``  ``{{ secrets.u ~ ":" ~ secrets.p }}``
==============================================  ===============================================

``secrets`` is the secret's key/value map; ``metadata`` the kv-v2 version metadata
(``created_time``, ``custom_metadata``, ``deletion_time``, ``destroyed``, ``version``; empty for
kv-v1); ``annotations`` and ``labels`` those of the VaultStaticSecret. A printed value that is
not a string is written as JSON (``true``, not ``True``), and a trailing newline is kept, as Go
keeps it.

No secret value may leave this module except inside the returned :class:`SecretData`: errors
name keys and templates only, and an error raised while a template runs is passed on only when
its type is known to carry no data, after quoted text that matches secret data is blanked.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import jinja2
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

KVType = Literal["kv-v1", "kv-v2"]

RAW_KEY = "_raw"
#: Kubernetes' limit on a Secret's data: the sum of the value lengths (keys are not counted).
MAX_SECRET_SIZE = 1024 * 1024

_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_MAX_KEY_LENGTH = 253
# What the API server requires in the data of the built-in Secret types.
_TYPE_KEYS: Mapping[str, tuple[str, ...]] = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}
_JSON_KEYS = frozenset({".dockerconfigjson", ".dockercfg"})
_REDACTED = "[REDACTED]"


class RenderError(Exception):
    """The Secret data cannot be built. ``key`` is the Secret data key or template at fault."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"key {self.key!r}: {self.message}" if self.key is not None else self.message


class SecretData(Mapping[str, bytes]):
    """Rendered Secret data: a read-only mapping whose ``repr`` names keys and never values."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, bytes]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> bytes:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        """The size Kubernetes counts against its 1 MiB limit."""
        return sum(len(v) for v in self._data.values())

    def __repr__(self) -> str:
        return f"SecretData(keys={sorted(self._data)!r}, size={self.size})"


@dataclass(frozen=True, kw_only=True)
class SecretTemplate:
    """One compiled template; ``key`` is the Secret data key it renders."""

    key: str
    # The text is configuration, not secret, but people do paste literals into templates.
    text: str = field(repr=False)
    compiled: jinja2.Template = field(repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class Transformation:
    """How Vault data becomes Secret data (``spec.destination.transformation``)."""

    templates: Mapping[str, SecretTemplate] = field(default_factory=lambda: MappingProxyType({}))
    includes: tuple[re.Pattern[str], ...] = ()
    excludes: tuple[re.Pattern[str], ...] = ()
    exclude_raw: bool = False


def go_json(value: Any) -> str:
    """``value`` as Go's ``json.Marshal`` writes it: compact, sorted keys, HTML-safe."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False)
    # These characters can only occur inside JSON strings, so replacing them is safe.
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class _FilterError(Exception):
    """Raised by our template filters; the message never holds the input."""


def _b64encode(value: Any) -> str:
    text = value if isinstance(value, str) else go_json(value)
    return base64.b64encode(text.encode()).decode("ascii")


def _b64decode(value: Any) -> str:
    if not isinstance(value, str):
        raise _FilterError("b64decode needs a string")
    try:
        return base64.b64decode(value, validate=True).decode()
    except UnicodeDecodeError:
        problem = "b64decode: the decoded bytes are not UTF-8 text"
    except (binascii.Error, ValueError):
        problem = "b64decode: the input is not valid base64"
    raise _FilterError(problem)


def _finalize(value: Any) -> Any:
    # Print non-strings as JSON, as the untemplated data is written; leave undefined values
    # alone so that printing them raises.
    if isinstance(value, str | jinja2.Undefined):
        return value
    return go_json(value)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus a bound on what one operator can allocate.

    ``'x' * 10**10`` would take a small node's memory before any output limit is reached.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise _FilterError("an exponent above 64 is refused")
        if operator == "*":
            sized, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sized, str | list | tuple) and isinstance(count, int) \
                    and len(sized) * count > MAX_SECRET_SIZE:
                raise _FilterError("a repetition larger than the 1 MiB Secret limit is refused")
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters["b64encode"] = _b64encode
    env.filters["b64decode"] = _b64decode
    env.filters["tojson"] = go_json
    return env


_ENV = _environment()


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> jinja2.Template:
    # Specs are parsed on every watch event; the same texts come back again and again.
    return _ENV.from_string(text)


def compile_template(*, key: str, text: str) -> SecretTemplate:
    """Compile ``text`` in the sandbox; a syntax error is a :class:`RenderError` naming ``key``."""
    try:
        compiled = _compile(text)
    except TemplateSyntaxError as exc:
        # Not str(exc): with the source at hand Jinja appends the offending line.
        raise RenderError(f"template syntax error on line {exc.lineno}: {exc.message}",
                          key=key) from None
    return SecretTemplate(key=key, text=text, compiled=compiled)


def render(
    *,
    kv_type: KVType,
    data: Mapping[str, Any],
    transformation: Transformation | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    secret_type: str = "Opaque",
) -> SecretData:
    """The Secret data for ``data``, the ``data`` object of a Vault KV read response.

    ``labels`` and ``annotations`` are the VaultStaticSecret's, offered to templates;
    ``secret_type`` is the destination Secret's type, whose required keys are checked. Raises
    :class:`RenderError` for anything Kubernetes would refuse, and for template failures.
    """
    transformation = transformation or Transformation()
    secrets, metadata = _source(kv_type=kv_type, data=data)

    out: dict[str, bytes] = {}
    if transformation.templates:
        out.update(_render_templates(
            templates=transformation.templates.values(),
            context={"secrets": secrets, "metadata": metadata,
                     "labels": dict(labels or {}), "annotations": dict(annotations or {})},
        ))
    source = {k: v for k, v in secrets.items() if _selected(k, transformation)}
    if not transformation.exclude_raw:
        if RAW_KEY in out or RAW_KEY in source:
            raise RenderError("the key is reserved for the raw Vault response; rename it, "
                              "exclude it, or set excludeRaw: true", key=RAW_KEY)
        out[RAW_KEY] = go_json(dict(data)).encode()
    for key, value in source.items():
        out.setdefault(key, _encode(value))

    _check(out, secret_type=secret_type)
    return SecretData(out)


def _source(*, kv_type: KVType, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The secret's key/value map and its metadata, from a response's ``data`` object."""
    if kv_type == "kv-v1":
        return dict(data), {}
    secrets = data.get("data")
    if secrets is None:
        raise RenderError("Vault returned no data for this version of the secret: it is "
                          "deleted or destroyed (the Secret keeps its last data)")
    if not isinstance(secrets, Mapping):
        raise RenderError("Vault's kv-v2 response has no data object; is the mount kv-v1?")
    metadata = data.get("metadata")
    return dict(secrets), dict(metadata) if isinstance(metadata, Mapping) else {}


def _selected(key: str, transformation: Transformation) -> bool:
    if any(p.search(key) for p in transformation.excludes):
        return False
    return not transformation.includes or any(p.search(key) for p in transformation.includes)


def _encode(value: Any) -> bytes:
    return (value if isinstance(value, str) else go_json(value)).encode()


def _render_templates(
    *, templates: Iterable[SecretTemplate], context: Mapping[str, Any]
) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for template in templates:
        failure = None
        try:
            out[template.key] = _bounded(template.compiled, context)
        except Exception as exc:  # whatever a template does wrong is the template's error
            failure = _describe(exc, context["secrets"])
        # Raised outside the except block, so the original exception, whose message or
        # attributes may hold secret data, is not even reachable as __context__.
        if failure is not None:
            raise RenderError(f"template failed: {failure}", key=template.key)
    return out


def _bounded(template: jinja2.Template, context: Mapping[str, Any]) -> bytes:
    """The output of ``template``, stopped as soon as it outgrows a Secret."""
    parts, size = [], 0
    for chunk in template.generate(context):
        part = chunk.encode()
        size += len(part)
        if size > MAX_SECRET_SIZE:
            raise _FilterError("the output is larger than the 1 MiB Secret limit")
        parts.append(part)
    return b"".join(parts)


# Exceptions whose messages hold names and types, not data; anything else is reported by type.
_TELLING = (UndefinedError, SecurityError, _FilterError, TypeError, ZeroDivisionError)
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _describe(exc: Exception, secrets: Mapping[str, Any]) -> str:
    if not isinstance(exc, _TELLING):
        return (f"{type(exc).__name__} (details withheld: the message may contain "
                "secret data)")
    message = str(exc)
    leaves = {text for leaf in _leaves(secrets) for text in (leaf, repr(leaf)[1:-1]) if text}

    # A name in quotes may have been computed from a secret (secrets[secrets.x]): blank any
    # quoted text that is part of a secret value, or holds one.
    def blank(match: re.Match[str]) -> str:
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        if quoted and any(quoted in leaf or leaf in quoted for leaf in leaves):
            return f"'{_REDACTED}'"
        return match.group(0)

    message = _QUOTED.sub(blank, message)
    for leaf in sorted(leaves, key=len, reverse=True):
        if len(leaf) >= 4:  # shorter ones would mangle ordinary words; they are quoted above
            message = message.replace(leaf, _REDACTED)
    return message


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def _check(data: Mapping[str, bytes], *, secret_type: str) -> None:
    """Refuse, naming the key, what the API server would refuse."""
    for key in data:
        problem = key_problem(key)
        if problem:
            raise RenderError(f"invalid Secret data key: {problem}", key=key)
    size = sum(len(v) for v in data.values())
    if size > MAX_SECRET_SIZE:
        largest = sorted(data, key=lambda k: len(data[k]), reverse=True)[:3]
        listed = ", ".join(f"{k} ({len(data[k])} bytes)" for k in largest)
        raise RenderError(
            f"the Secret data is {size} bytes, over Kubernetes' limit of {MAX_SECRET_SIZE} "
            f"(1 MiB); the largest keys are {listed}; exclude keys or set excludeRaw: true",
            key=largest[0],
        )
    for key in _TYPE_KEYS.get(secret_type, ()):
        if key not in data:
            raise RenderError(f"a Secret of type {secret_type} needs this key", key=key)
    if secret_type == "kubernetes.io/basic-auth" and not {"username", "password"} & set(data):
        raise RenderError("a Secret of type kubernetes.io/basic-auth needs 'username' or "
                          "'password'", key="username")
    for key in _JSON_KEYS & set(data) & set(_TYPE_KEYS.get(secret_type, ())):
        if not _is_json(data[key]):  # JSONDecodeError.doc would hold the whole value
            raise RenderError(f"a Secret of type {secret_type} needs valid JSON here", key=key)


def _is_json(value: bytes) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a Secret data key (Kubernetes' IsConfigMapKey), or None."""
    if len(key) > _MAX_KEY_LENGTH:
        return f"must be at most {_MAX_KEY_LENGTH} characters"
    if not _KEY.fullmatch(key):
        return "must consist of letters, digits, '-', '_' or '.'"
    if key in (".", "..") or key.startswith(".."):
        return "must not be '.' or '..', nor start with '..'"
    return None
