"""Go ``text/template``'s executor (``text/template/exec.go``) over :mod:`nodes`.

``missingkey`` is Go's default, as VSO leaves it: a missing map key is an invalid value, printed
``<no value>``, and a field of it is again invalid. A missing field of a struct (the template's
input) is an error. Output is bounded (:data:`MAX_OUTPUT`), and so is the depth of
``{{template}}`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.gotemplate import nodes as n
from syncd.gotemplate.errors import ExecError, FuncError
from syncd.gotemplate.funcs import BUILTINS, Func, check_args
from syncd.gotemplate.values import Struct, go_bytes, sprint_value, truth, type_name

MAX_OUTPUT = 1024 * 1024
MAX_DEPTH = 100


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class OutputTooLarge(Exception):
    pass


class _State:
    def __init__(self, trees: Mapping[str, n.Tree], functions: Mapping[str, Func],
                 literals: frozenset[str]) -> None:
        self.trees = trees
        self.functions = functions
        self.literals = literals
        self.out: list[str] = []
        self.size = 0
        self.vars: list[tuple[str, Any]] = []
        self.depth = 0
        self.line = 0
        #: The text the running tree was parsed from (whose lines ``line`` counts).
        self.source = ""

    def error(self, message: str, line: int | None = None) -> ExecError:
        return ExecError(message, line=self.line if line is None else line,
                         template=self.source)

    def write(self, text: str) -> None:
        self.size += len(go_bytes(text))
        if self.size > MAX_OUTPUT:
            raise OutputTooLarge
        self.out.append(text)

    # -- variables
    def push(self, name: str, value: Any) -> None:
        self.vars.append((name, value))

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def var(self, name: str) -> Any:
        for var_name, value in reversed(self.vars):
            if var_name == name:
                return value
        raise self.error(f'undefined variable: {name}')

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(f'undefined variable: {name}')

    # -- walking
    def walk(self, dot: Any, body: list[n.Node]) -> None:
        for node in body:
            self.line = node.line
            if isinstance(node, n.Text):
                self.write(node.text)
            elif isinstance(node, n.Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.print(value)
            elif isinstance(node, n.Branch):
                if node.keyword == "range":
                    self.range(dot, node)
                else:
                    self.if_or_with(dot, node)
            elif isinstance(node, n.TemplateCall):
                self.template(dot, node)
            elif isinstance(node, n.Break):
                raise _Break
            elif isinstance(node, n.Continue):
                raise _Continue

    def print(self, value: Any) -> None:
        if value is None:
            self.write("<no value>")
        elif callable(value) or isinstance(value, Func):
            raise self.error(f"can't print value of type {type_name(value)}")
        else:
            self.write(sprint_value(value))

    def if_or_with(self, dot: Any, node: n.Branch) -> None:
        mark = self.mark()
        try:
            value = self.pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if node.keyword == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            self.pop(mark)

    def range(self, dot: Any, node: n.Branch) -> None:
        mark = self.mark()
        try:
            value = self.pipeline(dot, node.pipe)
            # The pipeline's own declarations are set per element, not to the whole value.
            items: list[tuple[Any, Any]]
            if value is None:
                items = []
            elif isinstance(value, bool | float):
                raise self.error(f"range can't iterate over value of type {type_name(value)}",
                                 node.line)
            elif isinstance(value, int):
                if len(node.pipe.decl) > 1:
                    raise self.error("can't use an integer to iterate over more than one "
                                     "variable", node.line)
                if value > 10_000_000:
                    raise self.error("range over an integer above 10000000 is refused",
                                     node.line)
                items = [(i, i) for i in range(value)]
            elif isinstance(value, Mapping) and not isinstance(value, Struct):
                items = [(k, value[k]) for k in sorted(value)]
            elif isinstance(value, list | tuple):
                items = list(enumerate(value))
            else:
                raise self.error(f"range can't iterate over value of type {type_name(value)}",
                                 node.line)
            if not items:
                if node.else_body is not None:
                    self.walk(dot, node.else_body)
                return
            base = self.mark()
            for key, element in items:
                self.pop(base)
                if len(node.pipe.decl) == 1:
                    self.push(node.pipe.decl[0], element)
                elif len(node.pipe.decl) == 2:
                    self.push(node.pipe.decl[0], key)
                    self.push(node.pipe.decl[1], element)
                try:
                    self.walk(element, node.body)
                except _Continue:
                    continue
                except _Break:
                    break
        finally:
            self.pop(mark)

    def template(self, dot: Any, node: n.TemplateCall) -> None:
        tree = self.trees.get(node.name)
        if tree is None:
            raise self.error(f'no such template "{node.name}"', node.line)
        value = self.pipeline(dot, node.pipe) if node.pipe is not None else None
        if self.depth >= MAX_DEPTH:
            raise self.error(f"exceeded maximum template depth ({MAX_DEPTH})", node.line)
        saved, self.vars = self.vars, [("$", value)]
        saved_source, self.source = self.source, tree.source
        self.depth += 1
        try:
            self.walk(value, tree.body)
        finally:
            self.depth -= 1
            self.vars = saved
            self.source = saved_source

    # -- pipelines
    def pipeline(self, dot: Any, pipe: n.Pipe) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if value is _MISSING:
            value = None
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.push(name, value)
        return value

    def command(self, dot: Any, cmd: n.Command, final: Any) -> Any:
        first = cmd.args[0]
        self.line = first.line
        if isinstance(first, n.Field):
            return self.field_chain(dot, dot, first.names, cmd.args, final)
        if isinstance(first, n.Chain):
            receiver = self.arg_value(dot, first.node)
            return self.field_chain(dot, receiver, first.names, cmd.args, final)
        if isinstance(first, n.Identifier):
            return self.call(dot, first.name, cmd.args, final)
        if isinstance(first, n.Pipe):
            self.not_a_function(cmd.args, final)
            return self.pipeline(dot, first)
        if isinstance(first, n.Variable):
            value = self.var(first.name)
            if first.names:
                return self.field_chain(dot, value, first.names, cmd.args, final)
            self.not_a_function(cmd.args, final)
            return value
        self.not_a_function(cmd.args, final)
        if isinstance(first, n.Nil):
            raise self.error("nil is not a command")
        if isinstance(first, n.Dot):
            return dot
        assert isinstance(first, n.Literal)
        return first.value

    def not_a_function(self, args: list[n.Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.error("can't give argument to non-function")

    def field_chain(self, dot: Any, receiver: Any, names: tuple[str, ...],
                    args: list[n.Node], final: Any) -> Any:
        for name in names[:-1]:
            receiver = self.method(dot, receiver, name, [], _MISSING) \
                if name in _methods(receiver) else self.field(receiver, name, has_args=False)
        if names[-1] in _methods(receiver):
            return self.method(dot, receiver, names[-1], args[1:], final)
        has_args = len(args) > 1 or final is not _MISSING
        return self.field(receiver, names[-1], has_args=has_args)

    def method(self, dot: Any, receiver: Any, name: str, args: list[n.Node],
               final: Any) -> Any:
        """A method of a Go value (a time's ``.Format "Jan 2"``), called with its arguments."""
        values = [self.arg_value(dot, node) for node in args]
        if final is not _MISSING:
            values.append(final)
        function = _methods(receiver)[name]
        try:
            return function(*values)
        except TypeError:
            raise self.error(f"wrong number of args for {name}") from None
        except (ValueError, LookupError, ArithmeticError, OverflowError):
            raise self.error(f"error calling {name}: an invalid argument") from None

    def field(self, receiver: Any, name: str, *, has_args: bool) -> Any:
        if receiver is None:
            return None
        if isinstance(receiver, Struct):
            if name not in receiver.fields:
                raise self.error(f"can't evaluate field {name} in type {receiver.type_name}")
            if has_args:
                raise self.error(f"{name} has arguments but cannot be invoked as function")
            return receiver.fields[name]
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            return receiver.get(name)
        fields = getattr(receiver, "go_fields", None)  # a Go value with methods (semver)
        if isinstance(fields, Mapping) and name in fields:
            if has_args:
                raise self.error(f"{name} has arguments but cannot be invoked as function")
            return fields[name]
        raise self.error(f"can't evaluate field {name} in type {type_name(receiver)}")

    def arg_value(self, dot: Any, node: n.Node) -> Any:
        self.line = node.line
        if isinstance(node, n.Dot):
            return dot
        if isinstance(node, n.Nil):
            return None
        if isinstance(node, n.Literal):
            return node.value
        if isinstance(node, n.Field):
            return self.field_chain(dot, dot, node.names, [node], _MISSING)
        if isinstance(node, n.Variable):
            value = self.var(node.name)
            return self.field_chain(dot, value, node.names, [node], _MISSING) \
                if node.names else value
        if isinstance(node, n.Pipe):
            return self.pipeline(dot, node)
        if isinstance(node, n.Identifier):
            return self.call(dot, node.name, [node], _MISSING)
        if isinstance(node, n.Chain):
            receiver = self.arg_value(dot, node.node)
            return self.field_chain(dot, receiver, node.names, [node], _MISSING)
        raise self.error("can't handle an argument of this kind")

    def call(self, dot: Any, name: str, args: list[n.Node], final: Any) -> Any:
        line = args[0].line
        function = self.functions.get(name) or BUILTINS.get(name)
        if function is None:
            raise self.error(f'"{name}" is not a defined function', line)
        if name in ("and", "or"):
            # Evaluated lazily, left to right; the result is the deciding argument.
            operands: list[n.Node | None] = [*args[1:]]
            if final is not _MISSING:
                operands.append(None)  # the piped value
            if not operands:
                raise self.error(f"wrong number of args for {name}: want at least 1 got 0",
                                 line)
            value = None
            for operand in operands:
                value = final if operand is None else self.arg_value(dot, operand)
                if truth(value) == (name == "or"):
                    return value
            return value
        values = [self.arg_value(dot, node) for node in args[1:]]
        if final is not _MISSING:
            values.append(final)
        self.line = line
        problem = check_args(function, name, values, literals=[
            isinstance(node, n.Literal) for node in args[1:]] + [False] * (final is not _MISSING))
        if problem:
            raise self.error(problem, line)
        try:
            return function.fn(*values)
        except FuncError as exc:
            message = exc.message
        except RecursionError:
            message = "recursion deeper than allowed"
        except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError):
            message = "an invalid argument"
        if name == "fail":
            message = message if message in self.literals else "(message not shown)"
        raise self.error(f"error calling {name}: {message}", line)


_MISSING: Any = object()


def _methods(value: Any) -> Mapping[str, Any]:
    methods = getattr(value, "go_methods", None)
    return methods if isinstance(methods, Mapping) else {}


def execute(trees: Mapping[str, n.Tree], name: str, data: Any, *,
            functions: Mapping[str, Func], literals: frozenset[str]) -> str:
    """Run template ``name`` of ``trees`` on ``data``; :class:`ExecError` if it fails."""
    state = _State(trees, functions, literals)
    tree = trees.get(name)
    if tree is None:
        raise ExecError(f'no such template "{name}"')
    state.source = tree.source
    state.push("$", data)
    state.walk(data, tree.body)
    return "".join(state.out)
