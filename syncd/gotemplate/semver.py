"""Sprig's ``semver`` and ``semverCompare`` (Masterminds/semver v3, as Sprig documents it).

``semver`` gives a version whose ``.Major``, ``.Minor``, ``.Patch``, ``.Prerelease``,
``.Metadata`` and ``.Original`` a template reads, and which prints normalised (``1.2.0`` for
``v1.2``). ``semverCompare`` checks a version against constraints: ``=``, ``!=``, ``>``,
``<``, ``>=``, ``<=``, ``~`` (patch-level), ``^`` (compatible), wildcards (``1.2.x``, ``*``),
hyphen ranges (``1.2 - 1.4.5``), ``,`` or spaces for "and", ``||`` for "or". A version with a
prerelease satisfies only a constraint that names a prerelease, as in semver v3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from syncd.gotemplate.errors import FuncError

_VERSION = re.compile(
    r"v?(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+))?(?:\.(?P<patch>[0-9]+))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<meta>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?")


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: str
    meta: str
    original: str

    @property
    def go_fields(self) -> dict[str, object]:
        return {"Major": self.major, "Minor": self.minor, "Patch": self.patch,
                "Prerelease": self.pre, "Metadata": self.meta, "Original": self.original}

    def go_string(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return text + (f"-{self.pre}" if self.pre else "") + (f"+{self.meta}" if self.meta else "")

    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


def parse(text: str) -> Version:
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise FuncError("Invalid Semantic Version")
    return Version(int(match["major"]), int(match["minor"] or 0), int(match["patch"] or 0),
                   match["pre"] or "", match["meta"] or "", text)


def _pre_key(part: str) -> tuple[int, int | str]:
    return (0, int(part)) if part.isdigit() else (1, part)


def compare(a: Version, b: Version) -> int:
    if a.key() != b.key():
        return -1 if a.key() < b.key() else 1
    if a.pre == b.pre:
        return 0
    if not a.pre or not b.pre:
        return 1 if not a.pre else -1
    pa = [_pre_key(p) for p in a.pre.split(".")]
    pb = [_pre_key(p) for p in b.pre.split(".")]
    return -1 if pa < pb else (1 if pa > pb else 0)


_CONSTRAINT = re.compile(
    r"\s*(?P<op>!=|>=|=>|<=|=<|~>|>|<|=|~|\^)?\s*v?"
    r"(?P<major>[0-9]+|[xX*])(?:\.(?P<minor>[0-9]+|[xX*]))?(?:\.(?P<patch>[0-9]+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?\s*")
_WILD = ("x", "X", "*")
#: One constraint: an operator, then a version (spaces between them allowed).
_TERM = re.compile(r"(?:!=|>=|=>|<=|=<|~>|>|<|=|~|\^)?\s*v?[0-9xX*][0-9A-Za-z.+\-*]*")


def _check_one(op: str, m: re.Match[str], version: Version) -> bool:
    parts = [m["major"], m["minor"], m["patch"]]
    wild_at = next((i for i, p in enumerate(parts) if p is None or p in _WILD), 3)
    nums = [int(p) if p is not None and p not in _WILD else 0 for p in parts]
    target = Version(nums[0], nums[1], nums[2], m["pre"] or "", "", m.group(0))
    if version.pre and not target.pre:
        return False  # a prerelease only satisfies a constraint that names one
    if version.pre and target.pre and version.key() != target.key():
        return False
    c = compare(version, target)
    if op in ("", "="):
        if wild_at < 3:
            return version.key()[:wild_at] == target.key()[:wild_at]
        return c == 0
    if op == "!=":
        if wild_at < 3:
            return version.key()[:wild_at] != target.key()[:wild_at]
        return c != 0
    if op == ">":
        if wild_at < 3:
            return version.key()[:wild_at] > target.key()[:wild_at]
        return c > 0
    if op == "<":
        return c < 0
    if op in (">=", "=>"):
        return c >= 0
    if op in ("<=", "=<"):
        if wild_at < 3:
            return version.key()[:wild_at] <= target.key()[:wild_at]
        return c <= 0
    if op in ("~", "~>"):
        if c < 0:
            return False
        if wild_at == 1 or (m["minor"] is None):
            return version.major == target.major
        return (version.major, version.minor) == (target.major, target.minor)
    # ^
    if c < 0:
        return False
    if target.major > 0 or wild_at <= 1:
        return version.major == target.major
    if target.minor > 0 or wild_at == 2:
        return (version.major, version.minor) == (0, target.minor)
    return version.key() == target.key()


def _check_and(text: str, version: Version) -> bool:
    hyphen = re.fullmatch(r"\s*(\S+)\s+-\s+(\S+)\s*", text)
    if hyphen:
        return _check_and(f">= {hyphen[1]}, <= {hyphen[2]}", version)
    terms = _TERM.findall(text)
    if not terms or _TERM.sub("", text).replace(",", "").strip():
        raise FuncError("improper constraint")
    for term in terms:
        match = _CONSTRAINT.fullmatch(term)
        if match is None:
            raise FuncError("improper constraint")
        if not _check_one(match["op"] or "", match, version):
            return False
    return True


def satisfies(constraint: str, version: str) -> bool:
    parsed = parse(version)
    return any(_check_and(part, parsed) for part in constraint.split("||"))
