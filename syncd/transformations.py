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
- ``sourceTemplates`` join the resource's set of Go templates (:class:`syncd.rendering.
  SourceTemplate`), as VSO parses them: their ``{{define}}`` blocks can be called from every
  template, they are never rendered themselves (text outside the definitions goes nowhere),
  and each template keeps its own line numbers. A source template is named by its ``name``,
  else ``NAMESPACE/NAME/INDEX`` as in VSO; a name taken twice in the set is an error. They are
  checked here, so an error names the SecretTransformation, the entry and the line. Jinja2 has
  no template set: a source template is Go, and one marked ``{{!jinja2}}`` is refused;
- ``includes`` and ``excludes`` are added to the VaultStaticSecret's unless the reference says
  ``ignoreIncludes`` / ``ignoreExcludes``; excludes apply first, and never to templates.

Tenant boundary: VSO 1.4.1 lets any namespace use any SecretTransformation (the operator reads
them with its own rights). Here a reference may name a SecretTransformation of the
VaultStaticSecret's own namespace or of syncd's namespace (where the operator publishes shared
ones); another namespace's is refused (``TransformationNotAllowed``), because its templates are
that namespace's to show or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from plumbing.kube import JSON, Resource
from syncd.rendering import RenderError, compile_template, key_problem
from syncd.spec_parts import shorten
from syncd.specs import GROUP, VERSION
from syncd.templating import TemplateSyntaxProblem, compile_text, jinja2_body

SECRET_TRANSFORMATION = Resource(GROUP, VERSION, "secrettransformations",
                                 kind="SecretTransformation")
WHERE = "spec.destination.transformation"

Lookup = Callable[[str, str], JSON | None]


class TransformationError(Exception):
    """A ``transformationRefs`` entry cannot be used; ``reason`` is the condition's."""

    def __init__(self, message: str, *, reason: str = "InvalidSpec") -> None:
        super().__init__(shorten(message))
        self.reason = reason


def _check(spec: Mapping[str, Any], *, at: str, origin: str) -> None:
    """The SecretTransformation's own templates and filters, checked here so that a problem
    names it and its field (folded in, it would read as one of the VaultStaticSecret's)."""
    for key, template in _mapping(spec.get("templates")).items():
        problem = key_problem(key)
        if problem:
            raise TransformationError(f"{at}: {origin}: spec.templates[{key}]: invalid Secret"
                                      f" data key: {problem}")
        text = _mapping(template).get("text")
        try:
            compile_template(key=key, text=text if isinstance(text, str) else "")
        except RenderError as exc:
            raise TransformationError(f"{at}: {origin}: spec.templates[{key}].text:"
                                      f" {exc.message}") from None
    for part in ("includes", "excludes"):
        for i, pattern in enumerate(_strings(spec.get(part))):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise TransformationError(f"{at}: {origin}: spec.{part}[{i}]: invalid regular"
                                          f" expression: {exc.msg}") from None


def _source(entry: Any, *, at: str, default_name: str, origin: str) -> JSON:
    """A source template as :mod:`syncd.specs` reads it; TransformationError if it does not
    parse as a Go template."""
    source = _mapping(entry)
    name, text = source.get("name") or default_name, source.get("text") or ""
    if not isinstance(name, str) or not isinstance(text, str):
        raise TransformationError(f"{at}: {origin}: name and text must be strings")
    if jinja2_body(text) is not None:
        raise TransformationError(
            f"{at}: {origin}: a source template joins the set of Go templates, which Jinja2"
            " has not; put the Jinja2 macro in the template that uses it")
    try:
        compile_text(text)
    except TemplateSyntaxProblem as exc:
        raise TransformationError(f"{at}: {origin}: {exc}") from None
    return {"name": name, "text": text, "origin": origin}


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
    sources: list[JSON] = []
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
        _check(tspec, at=at, origin=f"SecretTransformation {ref_namespace}/{name}")
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
        given = tspec.get("sourceTemplates")
        for j, source_entry in enumerate(given if isinstance(given, list) else []):
            named = _mapping(source_entry).get("name")
            origin = (f"SecretTransformation {ref_namespace}/{name} sourceTemplates[{j}]"
                      + (f" ({named!r})" if isinstance(named, str) and named else ""))
            sources.append(_source(source_entry, at=at, default_name=f"{ref_namespace}/{name}/{j}",
                                   origin=origin))
    # One set of templates per resource: a name twice is refused, as VSO refuses it.
    taken = {str(_mapping(t).get("name") or f"templates[{key}]"): f"templates[{key}]"
             for key, t in templates.items()}
    for source in sources:
        other = taken.setdefault(source["name"], source["origin"])
        if other != source["origin"]:
            raise TransformationError(f"{WHERE}.transformationRefs: {source['origin']}:"
                                      f" duplicate template name {source['name']!r} (also"
                                      f" {other})")
    resolved = {k: v for k, v in transformation.items() if k != "transformationRefs"}
    resolved.update(templates=templates, includes=includes, excludes=excludes,
                    sourceTemplates=sources)
    return {**obj, "spec": {**spec, "destination": {**destination,
                                                   "transformation": resolved}}}
