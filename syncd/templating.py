"""Which language a template is in, the Jinja sandbox, and errors that say where and what went
wrong, never a value.

A template is Go ``text/template`` (:mod:`syncd.gotemplate`), as in VSO, unless its first line
is exactly :data:`JINJA2_MARKER`: then the rest is Jinja2. ``{{!jinja2}}`` is not valid Go
template text (Go's lexer refuses ``!`` in an action), so no template that VSO accepts carries
it, and nothing VSO renders changes meaning here.

Imported by syncd (to check a template's syntax when the spec is read) and by the template
worker process (:mod:`syncd.template_worker`, which runs them). It imports nothing but jinja2,
:mod:`syncd.gotemplate` and the standard library, so the worker stays small: every byte of it
counts against the memory limit of syncd's pod.

Why errors are built, not filtered: Jinja's messages quote what a template computed.
``{{ secrets[secrets.password | upper] }}`` fails with "'dict object' has no attribute
'S3CR3T'"; ``|reverse`` and ``|b64encode`` hand back other disguises of the same value, which no
search for the value itself can catch. So a failure is described by its *kind* (a fixed text
per exception type), the template line, and at most one name: the missing or refused name, when
it is written literally in the template (text the user already sees in the spec). Nothing from
the exception's message is passed on otherwise.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from syncd import gojson, gotemplate
from syncd.gotemplate.values import go_bytes, go_string

#: Kubernetes' limit on a Secret's data: the sum of the value lengths (keys are not counted).
MAX_SECRET_SIZE = 1024 * 1024
#: The longest template text accepted. Compiling is linear in the text but slow (about 9 ms per
#: KiB), and it happens when the spec is read; VSO's templates are a few hundred bytes.
MAX_TEMPLATE_LENGTH = 16 * 1024
#: Jinja names the source of ``from_string`` templates so in tracebacks.
_TEMPLATE_FILE = "<template>"
#: The first line of a Jinja2 template; any other text is a Go template.
JINJA2_MARKER = "{{!jinja2}}"


def jinja2_body(text: str) -> str | None:
    """The Jinja2 source of ``text`` if its first line is :data:`JINJA2_MARKER`, else None.

    The marker line becomes a Jinja comment that spans its newline, so the output does not
    start with a newline and Jinja's line numbers stay those of the text as written.
    """
    first, newline, rest = text.partition("\n")
    if first.rstrip() != JINJA2_MARKER:
        return None
    return "{#" + newline + "#}" + rest


class TemplateSyntaxProblem(Exception):
    """The template does not compile; ``str()`` says why and on which line (no data involved)."""


@dataclass(frozen=True, kw_only=True)
class Failure:
    """Why a template failed, in words chosen here. ``expensive``: over a resource budget.

    ``template``: the name of the template whose ``line`` it is, when that is another of the
    set than the one rendered (a ``{{define}}`` it called).
    """

    kind: str
    line: int | None = None
    expensive: bool = False
    template: str | None = None

    def describe(self, *, template: str | None = None) -> str:
        """``template``: how to call :attr:`template` (default: by its name)."""
        where = [] if self.template is None else [template or f"template {self.template!r}"]
        where += [] if self.line is None else [f"line {self.line}"]
        return f"{self.kind} ({', '.join(where)})" if where else self.kind


class TemplateFailed(Exception):
    """Raised by :func:`render_template`; carries a :class:`Failure`, never the cause."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


class _Refused(Exception):
    """Raised by our filters and operators; the message is ours and never holds the input."""


def go_json(value: Any) -> str:
    """``value`` as Go's ``json.Marshal`` writes it: compact, sorted keys, HTML-safe, Vault's
    numbers as Vault wrote them (:mod:`syncd.gojson`)."""
    return gojson.dumps(value)


def _b64encode(value: Any) -> str:
    text = value if isinstance(value, str) else go_json(value)
    return base64.b64encode(go_bytes(text)).decode("ascii")


def _b64decode(value: Any) -> str:
    # Any bytes, as in a Go template: those that are not UTF-8 ride in the string as
    # surrogateescape carries them, and reach the Secret as they were.
    if not isinstance(value, str):
        raise _Refused("b64decode needs a string")
    try:
        return go_string(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        problem = "b64decode: the input is not valid base64"
    raise _Refused(problem)


def _finalize(value: Any) -> Any:
    # Print non-strings as JSON, as the untemplated data is written; leave undefined values
    # alone so that printing them raises.
    if isinstance(value, str | jinja2.Undefined):
        return value
    return go_json(value)


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose error message is the bare name looked up, or empty.

    The name may have been computed from a secret, so the message is only ever compared with
    the template's literals (see :func:`_failure`), never shown as it is.
    """

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        return self._undefined_name if isinstance(self._undefined_name, str) else ""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus a bound on what one operator can allocate.

    ``'x' * 10**10`` is refused before it is computed; allocations we cannot see coming
    (``'x'|center(10**8)``) meet the worker's memory limit instead.
    """

    # Intercepted operators are also never computed at compile time (see _at_render_time).
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise _Refused("an exponent above 64 is refused")
        if operator == "*":
            sized, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sized, str | list | tuple) and isinstance(count, int) \
                    and len(sized) * count > MAX_SECRET_SIZE:
                raise _Refused("a repetition larger than the 1 MiB Secret limit is refused")
        return super().call_binop(context, operator, left, right)


def _at_render_time(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, a filter, made one that Jinja cannot run while compiling.

    Jinja computes a filter of constants when it compiles the template (``{{ 'x'|center(10**8)
    }}`` becomes a 100 MB constant), and templates are compiled in syncd's own process, when
    the spec is read. A filter that takes the render context cannot be computed then.
    """
    passes = getattr(getattr(function, "jinja_pass_arg", None), "name", None)

    @jinja2.pass_context
    def at_render_time(context: Context, *args: Any, **kwargs: Any) -> Any:
        if passes == "context":
            return function(context, *args, **kwargs)
        if passes == "eval_context":
            return function(context.eval_ctx, *args, **kwargs)
        if passes == "environment":
            return function(context.environment, *args, **kwargs)
        return function(*args, **kwargs)

    return at_render_time


def _environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(autoescape=False, undefined=_Undefined, keep_trailing_newline=True,
                   finalize=_finalize)
    env.filters["b64encode"] = _b64encode
    env.filters["b64decode"] = _b64decode
    env.filters["tojson"] = go_json
    for name, function in list(env.filters.items()):
        env.filters[name] = _at_render_time(function)
    return env


ENVIRONMENT = _environment()


@dataclass(frozen=True)
class Compiled:
    template: jinja2.Template
    #: Every name and string constant written in the text: what an error may repeat.
    literals: frozenset[str]


def compile_text(text: str) -> Compiled | gotemplate.Compiled:
    """``text`` compiled (Go, or Jinja2 in the sandbox); :class:`TemplateSyntaxProblem` if it
    does not compile."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateSyntaxProblem(f"the template is {len(text)} characters long; at most "
                                    f"{MAX_TEMPLATE_LENGTH} are accepted")
    body = jinja2_body(text)
    if body is None:
        try:
            return gotemplate.compile_text(text)
        except gotemplate.ParseError as exc:
            where = f" on line {exc.line}" if exc.line is not None else ""
            raise TemplateSyntaxProblem(f"template syntax error{where}: {exc.message}") from None
    compiled = _compile(body)
    if isinstance(compiled, str):
        raise TemplateSyntaxProblem(compiled)
    return compiled


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> Compiled | str:
    # Cached, failures too: specs are parsed on every watch event (syncd's own status writes
    # included), and the same texts come back again and again.
    try:
        tree = ENVIRONMENT.parse(text)
        template = ENVIRONMENT.from_string(tree)
    except TemplateSyntaxError as exc:
        # Not str(exc): with the source at hand Jinja appends the offending line.
        return f"template syntax error on line {exc.lineno}: {exc.message}"
    except (RecursionError, SyntaxError):  # SyntaxError: Python's own limits on nesting
        return "the template is nested too deeply to compile"
    # There is no template loader: a template is self-contained. Said here, in words, rather
    # than at render time as "an operation on a value of the wrong type".
    other = next(tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)),
                 None)
    if other is not None:
        word = {nodes.Include: "include", nodes.Extends: "extends"}.get(type(other), "import")
        return (f"template syntax error on line {other.lineno}: {{% {word} %}} is not"
                " available: a template is self-contained (use {% macro %} in the same text)")
    # MemoryError is not the text's fault (in the worker, its cache may have filled the
    # address space): raised, uncached, it ends in a fresh worker.
    return Compiled(template=template, literals=frozenset(_literals(tree)))


def _literals(tree: nodes.Node) -> Iterator[str]:
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Const)):
        if isinstance(node, nodes.Name):
            yield node.name
        elif isinstance(node, nodes.Getattr):
            yield node.attr
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            yield node.value


def render_template(text: str, context: Mapping[str, Any], *, name: str = "template",
                    siblings: Mapping[str, str] | None = None) -> str:
    """The output of template ``text``, stopped as soon as it outgrows a Secret.

    ``name`` and ``siblings`` (the other templates of the same object, by name) matter to Go
    templates, which form one set: ``{{template "x"}}`` finds a ``{{define "x"}}`` in any.
    Raises :class:`TemplateFailed` and nothing else: the exception that stopped the template
    is described, then dropped.
    """
    if jinja2_body(text) is None:
        return _render_go(text, context, name=name, siblings=siblings)
    compiled = None
    failure = None
    try:
        compiled = compile_text(text)
        assert isinstance(compiled, Compiled)
        parts, size = [], 0
        for chunk in compiled.template.generate(context):
            size += len(go_bytes(chunk))
            if size > MAX_SECRET_SIZE:
                raise _Refused("the output is larger than the 1 MiB Secret limit")
            parts.append(chunk)
        return "".join(parts)
    except TemplateSyntaxProblem as exc:
        failure = Failure(kind=str(exc))
    except MemoryError as exc:  # the worker's address-space limit (before Exception: a subclass)
        failure = Failure(kind="the template needed more memory than allowed",
                          line=_line(exc), expensive=True)
    except Exception as exc:  # whatever a template does wrong is the template's error
        failure = _failure(exc, literals=compiled.literals if compiled else frozenset())
    # Raised outside the except blocks, so the original exception, whose message, arguments or
    # frames may hold secret data, is not even reachable as __context__.
    raise TemplateFailed(failure)


def _render_go(text: str, context: Mapping[str, Any], *, name: str,
               siblings: Mapping[str, str] | None) -> str:
    failure = None
    try:
        compile_text(text)  # the length limit, and the same words for syntax errors
        return gotemplate.render(text, gotemplate.secret_input(context), name=name,
                                 siblings=siblings)
    except TemplateSyntaxProblem as exc:
        failure = Failure(kind=str(exc))
    except gotemplate.TemplateError as exc:  # its message holds no value (see its module)
        elsewhere = getattr(exc, "template", None)
        failure = Failure(kind=exc.message, line=exc.line,
                          template=elsewhere if elsewhere and elsewhere != name else None)
    except gotemplate.OutputTooLarge:
        failure = Failure(kind="the output is larger than the 1 MiB Secret limit")
    except MemoryError:
        failure = Failure(kind="the template needed more memory than allowed", expensive=True)
    except RecursionError:
        failure = Failure(kind="recursion deeper than allowed", expensive=True)
    except Exception as exc:  # a fault of ours, not the template's: still no value shown
        failure = Failure(kind=f"an internal error of type {type(exc).__name__}")
    # As for Jinja: raised outside the except blocks, so no cause is reachable.
    raise TemplateFailed(failure)


# (exception types, what they are called); the first match wins.
_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ZeroDivisionError, "division by zero"),
    (OverflowError, "a number or range too large"),
    (LookupError, "a key or index that does not exist"),
    (TypeError, "an operation on a value of the wrong type"),
    (UnicodeError, "text that cannot be encoded or decoded"),
    (ValueError, "an invalid value for the operation"),
    (AttributeError, "an attribute that does not exist"),
)


def _failure(exc: Exception, *, literals: frozenset[str]) -> Failure:
    line = _line(exc)
    if isinstance(exc, RecursionError):
        return Failure(kind="recursion deeper than allowed", line=line, expensive=True)
    if isinstance(exc, _Refused):
        return Failure(kind=str(exc.args[0]), line=line)
    if isinstance(exc, UndefinedError | SecurityError):
        # Our _Undefined makes the message the bare name; Jinja raises SecurityError with other
        # messages too. Either is repeated only if the template itself spells it.
        name = str(exc.args[0]) if exc.args else ""
        shown = repr(name) if name in literals else "a name computed from the data (not shown)"
        if isinstance(exc, SecurityError):
            return Failure(kind=f"unsafe access refused by the sandbox: {shown}", line=line)
        return Failure(kind=f"undefined: {shown}", line=line)
    for types, kind in _KINDS:
        if isinstance(exc, types):
            return Failure(kind=kind, line=line)
    return Failure(kind=f"an error of type {type(exc).__name__}", line=line)


def _line(exc: BaseException) -> int | None:
    """The template line being run when ``exc`` was raised (Jinja rewrites the traceback so
    that template frames carry template lines)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
