"""Go's ``text/template``, as VSO runs it, for templates moved over from VSO unchanged.

No well-kept Python implementation exists (PyPI has a 0.0.x CGo wrapper), so this is one:
:mod:`.lexer` and :mod:`.parser` (what ``template.Parse`` accepts and refuses), :mod:`.exec`
(``Execute``, with ``missingkey`` left at Go's default, as VSO leaves it), :mod:`.values` (Go's
printing: ``map[a:1 b:2]``, ``[a b]``, ``<no value>``, ``1e+06``), :mod:`.funcs` (the builtins
and VSO's Sprig subset). Pure Python, standard library only: it runs inside the template worker
(:mod:`syncd.template_worker`), which bounds its time and memory.

Templates of one VaultStaticSecret form one set, as in VSO: a ``{{define}}`` in one is
callable from the others with ``{{template "name" .}}``, and so is each template by its name
(:attr:`syncd.rendering.SecretTemplate.set_name`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncd.gotemplate import nodes
from syncd.gotemplate.errors import ExecError, FuncError, ParseError, TemplateError
from syncd.gotemplate.exec import MAX_OUTPUT, OutputTooLarge, execute
from syncd.gotemplate.funcs import FUNCTION_NAMES, SPRIG
from syncd.gotemplate.parser import parse
from syncd.gotemplate.values import Struct, from_json

__all__ = ["MAX_OUTPUT", "Compiled", "ExecError", "FuncError", "OutputTooLarge", "ParseError",
           "TemplateError", "compile_text", "render", "secret_input"]


@dataclass(frozen=True)
class Compiled:
    trees: Mapping[str, nodes.Tree]
    #: The string constants written in the text: what an error message may repeat.
    literals: frozenset[str]


@functools.lru_cache(maxsize=512)
def compile_text(text: str, *, name: str = "template") -> Compiled:
    """``text`` parsed; :class:`ParseError` (with the line) if Go would not parse it."""
    try:
        trees = parse(text, name=name, functions=FUNCTION_NAMES)
    except RecursionError:
        raise ParseError("the template is nested too deeply to parse") from None
    return Compiled(trees=trees, literals=frozenset(_literals(trees)))


def _literals(trees: Mapping[str, nodes.Tree]) -> set[str]:
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, nodes.Literal) and isinstance(value.value, str):
            found.add(value.value)
        if isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, nodes.Node):
            for slot in type(value).__slots__:
                visit(getattr(value, slot))

    for tree in trees.values():
        visit(tree.body)
    return found


def secret_input(context: Mapping[str, Any]) -> Struct:
    """VSO's ``SecretInput`` from syncd's template context (the keys of
    :func:`syncd.rendering.render`): ``.Secrets``, ``.Metadata``, ``.Annotations``,
    ``.Labels``, ``.WrapData``, with numbers as ``json.Number``."""
    return Struct("*helpers.SecretInput", {
        "Secrets": from_json(context.get("secrets") or {}),
        "WrapData": {},  # a nil map in VSO: prints map[], is false
        "Metadata": from_json(context.get("metadata") or {}),
        "Annotations": dict(context.get("annotations") or {}),
        "Labels": dict(context.get("labels") or {}),
    }, json_names={"Secrets": "secrets", "WrapData": "wrapData,omitempty",
                   "Metadata": "metadata", "Annotations": "annotations", "Labels": "labels"})


def render(text: str, data: Any, *, name: str = "template",
           siblings: Mapping[str, str] | None = None) -> str:
    """Template ``text`` executed on ``data``; ``siblings`` are the other templates of its set
    (name to text), whose definitions it may call. Raises :class:`TemplateError`, or
    :class:`OutputTooLarge`."""
    compiled = compile_text(text, name=name)
    trees: dict[str, nodes.Tree] = {}
    literals = set(compiled.literals)
    for sibling_name, sibling_text in (siblings or {}).items():
        if sibling_name == name:
            continue
        try:
            sibling = compile_text(sibling_text, name=sibling_name)
        except ParseError:
            continue  # reported against its own key
        trees.update(sibling.trees)
        literals |= sibling.literals
    trees.update(compiled.trees)
    return execute(trees, name, data, functions=SPRIG, literals=frozenset(literals))
