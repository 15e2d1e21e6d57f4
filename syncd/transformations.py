"""SecretTransformation: shared templates and key filters, resolved into a VaultStaticSecret.

``spec.destination.transformation.transformationRefs`` names SecretTransformations whose
templates and filters join the VaultStaticSecret's own. :func:`resolve_transformation_refs`
folds them into the API object before it is parsed, so the templates are compiled, bounded and
rendered exactly as inline ones (whatever language :mod:`syncd.rendering` speaks). VSO's rules:

- inline ``templates`` always win: a referenced template for a key an inline template already
  writes is left out (an error when asked for by ``templateRefs``); between references the
  first one in the list wins;
- with ``templateRefs``, only the named templates are taken, each written under its
  ``keyOverride`` or its name (a second template for a key so named is an error: it was asked
  for explicitly); without ``templateRefs``, all the SecretTransformation's templates;
- ``sourceTemplates`` are never written themselves: their text (definitions) is put before every
  template's text, so that each can use them. Text outside definitions in a source template
  would therefore show in every output, where VSO drops it: write source templates as
  ``{{- define "name" -}}...{{- end -}}``;
- ``includes`` and ``excludes`` are added to the VaultStaticSecret's unless the reference says
  ``ignoreIncludes`` / ``ignoreExcludes``; excludes apply first, and never to templates.

Tenant boundary: VSO 1.4.1 lets any namespace use any SecretTransformation (the operator reads
them with its own rights). Here a reference may name a SecretTransformation of the
VaultStaticSecret's own namespace or of syncd's namespace (where the operator publishes shared
ones); another namespace's is refused (``TransformationNotAllowed``), because its templates are
that namespace's to show or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from plumbing.kube import JSON, Resource
from syncd.specs import GROUP, VERSION
from syncd.templating import JINJA2_MARKER

SECRET_TRANSFORMATION = Resource(GROUP, VERSION, "secrettransformations",
                                 kind="SecretTransformation")
WHERE = "spec.destination.transformation"

Lookup = Callable[[str, str], JSON | None]


class TransformationError(Exception):
    """A ``transformationRefs`` entry cannot be used; ``reason`` is the condition's."""

    def __init__(self, message: str, *, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason


def _with_sources(prefix: str, text: str) -> str:
    """``text`` with the source templates before it, after its Jinja2 marker line if it has
    one (the marker must stay the first line)."""
    first, newline, rest = text.partition("\n")
    if first.rstrip() == JINJA2_MARKER:
        return first + newline + prefix + rest
    return prefix + text


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def references(obj: JSON) -> list[tuple[str, str]]:
    """The (namespace, name) of the SecretTransformations a VaultStaticSecret refers to."""
    namespace = (obj.get("metadata") or {}).get("namespace", "")
    transformation = _mapping(_mapping(_mapping(obj.get("spec")).get("destination"))
                              .get("transformation"))
    refs = transformation.get("transformationRefs")
    return [(_mapping(r).get("namespace") or namespace, str(_mapping(r).get("name") or ""))
            for r in (refs if isinstance(refs, list) else [])]


def resolve_transformation_refs(obj: JSON, *, lookup: Lookup, operator_namespace: str) -> JSON:
    """``obj`` (a VaultStaticSecret) with its ``transformationRefs`` folded into its
    transformation; ``obj`` itself when it has none."""
    spec = _mapping(obj.get("spec"))
    destination = _mapping(spec.get("destination"))
    transformation = _mapping(destination.get("transformation"))
    refs = transformation.get("transformationRefs")
    if not refs:
        return obj
    if not isinstance(refs, list):
        raise TransformationError(f"{WHERE}.transformationRefs: must be a list")
    namespace = (obj.get("metadata") or {}).get("namespace", "")
    templates: dict[str, Any] = dict(_mapping(transformation.get("templates")))
    includes = _strings(transformation.get("includes"))
    excludes = _strings(transformation.get("excludes"))
    sources: list[str] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(refs):
        at = f"{WHERE}.transformationRefs[{i}]"
        ref = _mapping(entry)
        name = ref.get("name")
        if not isinstance(name, str) or not name:
            raise TransformationError(f"{at}.name: is required (a SecretTransformation)")
        ref_namespace = ref.get("namespace") or namespace
        if (ref_namespace, name) in seen:
            raise TransformationError(f"{at}: SecretTransformation {ref_namespace}/{name} is"
                                      " referenced twice")
        seen.add((ref_namespace, name))
        if ref_namespace not in (namespace, operator_namespace):
            raise TransformationError(
                f"{at}.namespace: SecretTransformation {ref_namespace}/{name} is in another"
                f" namespace; only those of {namespace} and of syncd's namespace"
                f" ({operator_namespace}) may be used", reason="TransformationNotAllowed")
        found = lookup(ref_namespace, name)
        if found is None:
            raise TransformationError(f"{at}: SecretTransformation {ref_namespace}/{name} not"
                                      " found", reason="TransformationNotFound")
        tspec = _mapping(found.get("spec"))
        if ref.get("ignoreExcludes") is not True:
            excludes += _strings(tspec.get("excludes"))
        if ref.get("ignoreIncludes") is not True:
            includes += _strings(tspec.get("includes"))
        offered = _mapping(tspec.get("templates"))
        wanted = ref.get("templateRefs") or []
        for j, item in enumerate(wanted if isinstance(wanted, list) else []):
            template_ref = _mapping(item)
            tname = template_ref.get("name") or ""
            if tname not in offered:
                raise TransformationError(
                    f"{at}.templateRefs[{j}].name: template {tname!r} not found in"
                    f" SecretTransformation {ref_namespace}/{name}")
            key = template_ref.get("keyOverride") or tname
            if key in templates:
                raise TransformationError(
                    f"{at}.templateRefs[{j}]: key {key!r} already has a template; set"
                    " keyOverride to write this one under another key")
            templates[key] = offered[tname]
        if not wanted:
            for key in sorted(offered):
                templates.setdefault(key, offered[key])
        sources += [text for s in (tspec.get("sourceTemplates") or [])
                    if isinstance(text := _mapping(s).get("text"), str)]
    if sources:
        prefix = "".join(sources)
        templates = {key: {**_mapping(t), "text": _with_sources(
            prefix, str(_mapping(t).get("text") or ""))} for key, t in templates.items()}
    resolved = {k: v for k, v in transformation.items() if k != "transformationRefs"}
    resolved.update(templates=templates, includes=includes, excludes=excludes)
    return {**obj, "spec": {**spec, "destination": {**destination,
                                                   "transformation": resolved}}}
