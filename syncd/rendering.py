"""Turn one Vault KV read into the ``data`` of a Kubernetes Secret, the way VSO does.

The rules follow VSO's secret data builder, so a VaultStaticSecret moved over from VSO yields
the same bytes:

- A value that is a string is written as its UTF-8 bytes; any other JSON value is written as
  compact JSON, byte for byte what Go's ``json.Marshal`` writes (sorted keys, ``<``, ``>`` and
  ``&`` escaped, numbers as Vault wrote them: :mod:`syncd.gojson`).
- ``_raw`` holds the JSON of the Vault response's ``data`` object: for kv-v2 that is the whole
  ``{"data": ..., "metadata": ...}``, for kv-v1 the secret itself. ``excludeRaw`` drops it. A
  source key or template named ``_raw`` next to it is an error, as in VSO.
- ``excludes`` then ``includes`` (regular expressions, matched anywhere in the key as Go's
  ``MatchString`` does) filter the *source* keys only: never template outputs, never ``_raw``.
  A template output wins over a source key of the same name.

Templates are Go ``text/template``, as in VSO (:mod:`syncd.gotemplate`): the same input
(``.Secrets``, ``.Metadata``, ``.Annotations``, ``.Labels``; Vault's numbers as ``json.Number``),
Go's ``missingkey`` default (a missing key prints ``<no value>``), Go's printing, and VSO's
function map (its Sprig allow-list). The templates of one resource form one set: a
``{{define}}`` in one is callable from the others, and from the source templates of the
SecretTransformations it references (:class:`SourceTemplate`), which are never rendered.

Jinja2 stays available behind a marker: a template whose first line is exactly ``{{!jinja2}}``
is Jinja2 (rendered in Jinja's immutable sandbox, autoescaping off, undefined values as errors).
The marker is not valid Go template text, so no VSO template is read as Jinja2 by mistake; the
line is part of the text, so line numbers in errors count it. The Jinja2 input and VSO's:

==============================================  ===============================================
VSO (Go template)                               vault-syncd (Jinja2, after ``{{!jinja2}}``)
==============================================  ===============================================
``{{ .Secrets.password }}``                     ``{{ secrets.password }}``
``{{ get .Secrets "api-key" }}``                ``{{ secrets["api-key"] }}``
``{{ .Metadata.custom_metadata.owner }}``       ``{{ metadata.custom_metadata.owner }}``
``{{ .Annotations.x }}``, ``{{ .Labels.x }}``   ``{{ annotations.x }}``, ``{{ labels.x }}``
``{{ .Secrets.x | b64enc }}`` / ``b64dec``      ``{{ secrets.x | b64encode }}`` / ``b64decode``
``{{ .Secrets.x | toJson }}``                   ``{{ secrets.x | tojson }}`` (Go's bytes)
``{{ range $k, $v := .Secrets }}``              ``{% for k, v in secrets | dictsort %}``
==============================================  ===============================================

In Jinja2, a printed value that is not a string is written as JSON (``true``, not ``True``), and
a trailing newline is kept, as Go keeps it.

Templates of both languages run in worker processes (:mod:`syncd.template_pool`), with a
deadline and a memory bound, and their errors are described by kind and line, never by a value
(:mod:`syncd.templating`, :mod:`syncd.gotemplate.errors`). No secret value may leave this
module except inside the returned :class:`SecretData`: errors name keys and templates only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from syncd.templating import MAX_SECRET_SIZE as MAX_SECRET_SIZE  # noqa: PLC0414 (re-exported)
from syncd.templating import TemplateSyntaxProblem, compile_text
from syncd.templating import go_json as go_json  # noqa: PLC0414 (re-exported)

KVType = Literal["kv-v1", "kv-v2"]

RAW_KEY = "_raw"

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


class RenderError(Exception):
    """The Secret data cannot be built. ``key`` is the Secret data key or template at fault.

    ``reason`` is the condition reason; ``retry``: retried with backoff (the failure is not a
    property of the data alone), rather than at the next refresh.
    """

    reason = "InvalidSecretData"
    retry = False

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"key {self.key!r}: {self.message}" if self.key is not None else self.message


class TemplateTooExpensive(RenderError):
    """A template went over its deadline or its memory, or its worker died rendering it."""

    reason = "TemplateTooExpensive"
    retry = True


class TemplateWorkerError(RenderError):
    """No template worker could be started (or syncd is stopping)."""

    reason = "TemplateWorkerFailed"
    retry = True


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
    """One template, checked to compile; ``key`` is the Secret data key it renders.

    ``name`` is the template's ``name`` field: its name in the set of Go templates of one
    resource, which ``{{template "NAME" .}}`` calls; without one it is ``templates[KEY]``.
    """

    key: str
    # The text is configuration, not secret, but people do paste literals into templates.
    text: str = field(repr=False)
    name: str | None = None

    @property
    def set_name(self) -> str:
        return self.name or f"templates[{self.key}]"


@dataclass(frozen=True, kw_only=True)
class SourceTemplate:
    """A SecretTransformation's source template: it joins the set of Go templates that
    ``templates`` are rendered in, so its ``{{define}}`` blocks can be called, and is never
    rendered itself (text outside its definitions goes nowhere). ``origin`` names it in
    errors: the SecretTransformation and the entry."""

    name: str
    text: str = field(repr=False)
    origin: str


@dataclass(frozen=True, kw_only=True)
class Transformation:
    """How Vault data becomes Secret data (``spec.destination.transformation``)."""

    templates: Mapping[str, SecretTemplate] = field(default_factory=lambda: MappingProxyType({}))
    sources: tuple[SourceTemplate, ...] = ()
    includes: tuple[re.Pattern[str], ...] = ()
    excludes: tuple[re.Pattern[str], ...] = ()
    exclude_raw: bool = False


class Templates(Protocol):
    """What renders templates: :class:`syncd.template_pool.TemplatePool`."""

    async def render(
        self, *, templates: Sequence[SecretTemplate], context: Mapping[str, Any], tenant: str,
        sources: Sequence[SourceTemplate] = (),
    ) -> dict[str, bytes]: ...


def compile_template(*, key: str, text: str, name: str | None = None) -> SecretTemplate:
    """Check that ``text`` compiles in the sandbox; a :class:`RenderError` naming ``key`` if
    not."""
    try:
        compile_text(text)
    except TemplateSyntaxProblem as exc:
        raise RenderError(str(exc), key=key) from None
    return SecretTemplate(key=key, text=text, name=name or None)


async def render(
    *,
    kv_type: KVType,
    data: Mapping[str, Any],
    templates: Templates,
    transformation: Transformation | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    secret_type: str = "Opaque",
    tenant: str = "",
) -> SecretData:
    """The Secret data for ``data``, the ``data`` object of a Vault KV read response.

    ``templates`` runs the templates, on behalf of ``tenant`` (the namespace); ``labels`` and
    ``annotations`` are the VaultStaticSecret's, offered to templates; ``secret_type`` is the
    destination Secret's type, whose required keys are checked. Raises :class:`RenderError` for
    anything Kubernetes would refuse, and for template failures.
    """
    transformation = transformation or Transformation()
    secrets, metadata = _source(kv_type=kv_type, data=data)

    out: dict[str, bytes] = {}
    if transformation.templates:
        out.update(await templates.render(
            templates=list(transformation.templates.values()), sources=transformation.sources,
            context={"secrets": secrets, "metadata": metadata,
                     "labels": dict(labels or {}), "annotations": dict(annotations or {})},
            tenant=tenant,
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
