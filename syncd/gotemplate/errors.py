"""The two errors of a Go template, and the rule for their messages.

A message is built here from fixed words and from what the template's author wrote (a function,
field, variable or template name, a string constant): never from the data a template reads,
which is secret. Go's own messages quote values (``index out of range: 7``, ``fail`` with a
computed message); ours say what kind of thing went wrong and where.
"""

from __future__ import annotations


class TemplateError(Exception):
    """``message`` (no data in it) at ``line`` of the template text."""

    kind = "template error"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"{self.message} (line {self.line})" if self.line is not None else self.message


class ParseError(TemplateError):
    """The text is not a Go template (Go's ``template.Parse`` fails the same way)."""

    kind = "template syntax error"


class ExecError(TemplateError):
    """Executing the template failed (Go's ``Execute`` fails the same way)."""

    kind = "template execution error"


class FuncError(Exception):
    """Raised by a template function; its message is fixed text, never an argument."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
