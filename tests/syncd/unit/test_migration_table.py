"""README's migration table from VSO lists every field of our CRDs, so it cannot fall behind.

Each of the five kinds has a table in README's "From VSO: every field" whose first column
names fields under ``spec.`` (``a.{b,c}`` is ``a.b`` and ``a.c``, ``[]`` a list, ``*`` a map
key). Every field of the kind's CRD schema must be named there, itself or through a field
below it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
KINDS = ("VaultConnection", "VaultAuth", "VaultAuthGlobal", "SecretTransformation",
         "VaultStaticSecret")


def expand(text: str) -> list[str]:
    """``a.{b,c}.{d,e}`` as its four paths (groups may nest)."""
    start = text.find("{")
    if start < 0:
        return [text]
    depth, choices, begin = 0, [], start + 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 1 and text[i] == ",":
            choices.append(text[begin:i])
            begin = i + 1
        elif depth == 0:
            choices.append(text[begin:i])
            rest = text[i + 1:]
            break
    else:
        raise ValueError(f"unbalanced braces in {text!r}")
    return [path for choice in choices for tail in expand(rest)
            for path in expand(text[:start] + choice + tail)]


def _normal(path: str) -> str:
    return path.replace("[]", "").replace(".*", "")


def listed(readme: str, kind: str) -> set[str]:
    """The field paths the first column of ``kind``'s table names."""
    section = readme[readme.index("### From VSO: every field"):]
    section = section[:section.index("### From the Agent Injector")]
    table = section[section.index(f"| {kind} | here |"):]
    table = table[:table.index("\n\n")]
    paths: set[str] = set()
    for row in table.splitlines()[2:]:
        first = row.split(" | ")[0]
        for code in re.findall(r"`([^`]+)`", first):
            paths.update(_normal(p) for p in expand(code))
    return paths


def schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield path
        for child in (sub, sub.get("items") or {}, sub.get("additionalProperties") or {}):
            if isinstance(child, dict):
                yield from schema_paths(child, f"{path}.")


def _crds() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        [version] = crd["spec"]["versions"]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def test_expand() -> None:
    assert expand("a.{b,c}.{d,e[].{f,g}}") == [
        "a.b.d", "a.b.e[].f", "a.b.e[].g", "a.c.d", "a.c.e[].f", "a.c.e[].g"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_of_the_crd_is_in_the_migration_table(kind: str) -> None:
    readme = (ROOT / "README.md").read_text()
    names = listed(readme, kind)
    schema = _crds()[kind]["properties"]["spec"]
    fields = sorted(set(schema_paths(schema)))
    assert fields
    missing = [f for f in fields
               if not any(n == f or n.startswith(f + ".") for n in names)]
    assert missing == [], f"README's {kind} table does not name {missing}"
