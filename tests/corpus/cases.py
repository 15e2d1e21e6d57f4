"""The bad-input corpus: data files, each one case, read here for the tests that run them.

``resources/<Kind>/<case>.yaml`` holds two YAML documents: the expectation, then the resource
as a user would apply it. The expectation says at which ``layer`` the resource is refused
(``schema``: the API server, by the CRD's schema, with strict field validation; ``syncd``: it
passes the schema and syncd refuses it, with a condition and a Warning Event; ``render``: it
parses, and its template is stopped when rendered with the ``vault`` data given), the ``field``
the refusal must name, optionally words it ``says``, strings it must ``never`` show (a token in
a header...) and the condition ``reason`` (unless told: ``InvalidSpec``; ``VaultConnectionInvalid``
or ``VaultAuthInvalid`` on the objects that use an invalid VaultConnection, VaultAuth or
VaultAuthGlobal). A long string is written ``!repeat [text, times]`` or ``!repeat [text, times,
prefix]``. To add a case, add a file: the tests run every file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).parent
RESOURCES = CORPUS / "resources"
#: The condition reason of an invalid object, on the object that uses it (InvalidSpec: its own).
_INVALID = {"VaultConnection": "VaultConnectionInvalid", "VaultAuth": "VaultAuthInvalid",
            "VaultAuthGlobal": "VaultAuthInvalid"}


class _Loader(yaml.SafeLoader):
    """YAML with ``!repeat [text, times, prefix]`` (the prefix is optional)."""


def _repeat(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.SequenceNode)
    text, times, *prefix = loader.construct_sequence(node)
    return "".join(prefix) + str(text) * int(times)


_Loader.add_constructor("!repeat", _repeat)


def load_yaml(text: str) -> list[Any]:
    """The documents of ``text``, with the corpus's ``!repeat`` tag."""
    return list(yaml.load_all(text, Loader=_Loader))


@dataclass(frozen=True, kw_only=True)
class ResourceCase:
    kind: str
    name: str
    about: str
    layer: str
    field: str
    resource: dict[str, Any]
    says: str = ""
    never: tuple[str, ...] = ()
    reason: str
    #: The Vault data a ``render`` case is rendered with.
    vault: dict[str, Any] = field(default_factory=dict)
    path: Path = field(default=Path())

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"


def resource_case(path: Path) -> ResourceCase:
    """The case in ``path`` (``resources/<Kind>/<case>.yaml``)."""
    text = path.read_text()
    header, resource = load_yaml(text)
    expect = header["expect"]
    case = ResourceCase(
        kind=path.parent.name, name=path.stem, about=text.splitlines()[0].lstrip("# ").strip(),
        layer=expect["layer"], field=expect["field"], resource=resource,
        says=expect.get("says", ""), never=tuple(expect.get("never") or ()),
        reason=expect.get("reason", _INVALID.get(path.parent.name, "InvalidSpec")),
        vault=expect.get("vault") or {}, path=path,
    )
    assert case.kind == resource["kind"], path
    assert case.layer in ("schema", "syncd", "render"), path
    return case


def resource_cases(layer: str | None = None) -> list[ResourceCase]:
    """Every case of ``resources/``, in a stable order; those of ``layer`` only if given."""
    cases = [resource_case(path) for path in sorted(RESOURCES.glob("*/*.yaml"))]
    return [c for c in cases if layer is None or c.layer == layer]
