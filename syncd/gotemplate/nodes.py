"""The parse tree of a Go template (``text/template/parse/node.go``, reduced to what runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Node:
    line: int


@dataclass(slots=True)
class Text(Node):
    text: str


@dataclass(slots=True)
class Dot(Node):
    pass


@dataclass(slots=True)
class Nil(Node):
    pass


@dataclass(slots=True)
class Literal(Node):
    """A bool, number, string or character constant; ``value`` is the Python value."""

    value: Any
    kind: str  # "bool", "number", "string"


@dataclass(slots=True)
class Field(Node):
    """``.A.B``: fields of dot."""

    names: tuple[str, ...]


@dataclass(slots=True)
class Variable(Node):
    """``$x.A.B``: a variable and optional fields."""

    name: str
    names: tuple[str, ...] = ()


@dataclass(slots=True)
class Identifier(Node):
    """A function name."""

    name: str


@dataclass(slots=True)
class Chain(Node):
    """``(pipeline).A.B``: fields of an operand that is not dot or a variable."""

    node: Node
    names: tuple[str, ...]


@dataclass(slots=True)
class Command(Node):
    args: list[Node]


@dataclass(slots=True)
class Pipe(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]


@dataclass(slots=True)
class Action(Node):
    pipe: Pipe


@dataclass(slots=True)
class Branch(Node):
    """``if``, ``with`` or ``range``."""

    keyword: str
    pipe: Pipe
    body: list[Node]
    else_body: list[Node] | None = None


@dataclass(slots=True)
class Break(Node):
    pass


@dataclass(slots=True)
class Continue(Node):
    pass


@dataclass(slots=True)
class TemplateCall(Node):
    name: str
    pipe: Pipe | None


@dataclass(slots=True)
class Tree:
    name: str
    body: list[Node] = field(default_factory=list)
