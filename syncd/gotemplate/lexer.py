"""Go ``text/template``'s lexer: text and actions, as ``text/template/parse/lex.go`` splits them.

Delimiters are ``{{`` and ``}}``; ``{{- `` and `` -}}`` (the space is required) trim the white
space next to the action; ``{{/* ... */}}`` is a comment, which must touch its delimiters (or
their trim markers). Every token carries its line, counted in the template text, for errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto

from syncd.gotemplate.errors import ParseError

LEFT, RIGHT = "{{", "}}"
_TRIM_SPACE = " \t\r\n"
#: What follows a backslash in a Go string or character constant, and what it stands for.
_UNESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
              "b": "\b", "f": "\f", "v": "\v"}
#: A Go number literal (imaginary numbers aside): what the lexer's scanNumber accepts.
_NUMBER = re.compile(
    r"[+-]?(?:0[xX](?=[0-9a-fA-F_.])[0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[oO][0-7_]+|0[bB][01_]+"
    r"|(?=\.?[0-9])[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)")
KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "range",
                      "nil", "template", "with"})


class T(Enum):
    TEXT = auto()
    LEFT = auto()         # {{
    RIGHT = auto()        # }}
    SPACE = auto()
    IDENT = auto()        # a function name
    KEYWORD = auto()
    FIELD = auto()        # .Name
    DOT = auto()          # . alone
    VARIABLE = auto()     # $ or $name
    DECLARE = auto()      # :=
    ASSIGN = auto()       # =
    PIPE = auto()
    LPAREN = auto()
    RPAREN = auto()
    COMMA = auto()
    STRING = auto()       # the decoded value
    RAW_STRING = auto()   # the value
    CHAR = auto()         # the code point, as an int
    NUMBER = auto()       # the literal text
    BOOL = auto()
    EOF = auto()


@dataclass(frozen=True, slots=True)
class Token:
    type: T
    value: object
    line: int


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.tokens: list[Token] = []

    def emit(self, type_: T, value: object, line: int | None = None) -> None:
        self.tokens.append(Token(type_, value, self.line if line is None else line))

    def fail(self, message: str, line: int | None = None) -> ParseError:
        return ParseError(message, line=self.line if line is None else line)

    def advance(self, end: int) -> str:
        chunk = self.text[self.pos:end]
        self.line += chunk.count("\n")
        self.pos = end
        return chunk

    def run(self) -> list[Token]:
        text = self.text
        trim_next = False
        while True:
            start = text.find(LEFT, self.pos)
            end = len(text) if start < 0 else start
            chunk_line = self.line
            chunk = self.advance(end)
            if trim_next:
                chunk = chunk.lstrip(_TRIM_SPACE)
            trim_left = start >= 0 and text[start + 2:start + 3] == "-" and \
                text[start + 3:start + 4] in (" ", "\t", "\r", "\n")
            if trim_left:
                chunk = chunk.rstrip(_TRIM_SPACE)
            if chunk:
                self.emit(T.TEXT, chunk, chunk_line)
            if start < 0:
                self.emit(T.EOF, None)
                return self.tokens
            # The marker and the space after it.
            self.advance(start + (4 if trim_left else 2))
            trim_next = self.action()

    def _right_at(self, pos: int) -> tuple[bool, int]:
        """Whether a right delimiter (with its trim marker) starts at ``pos``; its length."""
        text = self.text
        if text[pos:pos + 1] in (" ", "\t", "\r", "\n") and text.startswith("-" + RIGHT, pos + 1):
            return True, 4
        return text.startswith(RIGHT, pos), 2

    def action(self) -> bool:
        """Lex one action after its left delimiter; whether it trims the text after it."""
        text = self.text
        open_line = self.line
        if text.startswith("/*", self.pos):
            close = text.find("*/", self.pos + 2)
            if close < 0:
                raise self.fail("unclosed comment", open_line)
            self.advance(close + 2)
            is_right, length = self._right_at(self.pos)
            if not is_right:
                raise self.fail("comment ends before closing delimiter")
            self.advance(self.pos + length)
            return length == 4
        self.emit(T.LEFT, None)
        depth = 0
        while True:
            if self.pos >= len(text):
                raise self.fail("unclosed action", open_line)
            is_right, length = self._right_at(self.pos)
            if is_right and depth == 0:
                self.emit(T.RIGHT, None)
                self.advance(self.pos + length)
                return length == 4
            if is_right and depth:
                raise self.fail("unclosed left paren")
            c = text[self.pos]
            if c == "\n" or c in " \t\r":
                end = self.pos
                while end < len(text) and text[end] in " \t\r\n":
                    if self._right_at(end)[0] and self._right_at(end)[1] == 4:
                        break
                    end += 1
                if end == self.pos:  # " -}}" right here
                    continue
                self.advance(end)
                self.emit(T.SPACE, None)
            elif c == "=":
                self.emit(T.ASSIGN, None)
                self.advance(self.pos + 1)
            elif c == ":":
                if not text.startswith(":=", self.pos):
                    raise self.fail("expected :=")
                self.emit(T.DECLARE, None)
                self.advance(self.pos + 2)
            elif c == "|":
                self.emit(T.PIPE, None)
                self.advance(self.pos + 1)
            elif c == '"':
                self.quoted()
            elif c == "`":
                close = text.find("`", self.pos + 1)
                if close < 0:
                    raise self.fail("unterminated raw quoted string")
                self.emit(T.RAW_STRING, text[self.pos + 1:close])
                self.advance(close + 1)
            elif c == "'":
                self.char()
            elif c == "$":
                end = self.pos + 1
                while end < len(text) and _is_alnum(text[end]):
                    end += 1
                self.emit(T.VARIABLE, text[self.pos:end])
                self.advance(end)
            elif c == ".":
                if self.pos + 1 < len(text) and text[self.pos + 1].isdigit():
                    self.number()
                    continue
                end = self.pos + 1
                while end < len(text) and _is_alnum(text[end]):
                    end += 1
                if end == self.pos + 1:
                    self.emit(T.DOT, None)
                else:
                    self.emit(T.FIELD, text[self.pos + 1:end])
                self.advance(end)
            elif c in "+-" or c.isdigit():
                self.number()
            elif _is_alnum(c):
                end = self.pos
                while end < len(text) and _is_alnum(text[end]):
                    end += 1
                word = text[self.pos:end]
                if word in KEYWORDS:
                    self.emit(T.KEYWORD, word)
                elif word in ("true", "false"):
                    self.emit(T.BOOL, word == "true")
                else:
                    self.emit(T.IDENT, word)
                self.advance(end)
            elif c == "(":
                depth += 1
                self.emit(T.LPAREN, None)
                self.advance(self.pos + 1)
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise self.fail("unexpected right paren")
                self.emit(T.RPAREN, None)
                self.advance(self.pos + 1)
            elif c == ",":
                self.emit(T.COMMA, None)
                self.advance(self.pos + 1)
            else:
                raise self.fail(f"unrecognized character in action: U+{ord(c):04X} {c!r}")

    def quoted(self) -> None:
        text = self.text
        out: list[str] = []
        i = self.pos + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self.fail("unterminated quoted string")
            c = text[i]
            if c == '"':
                break
            if c == "\\":
                i += 1
                e = text[i:i + 1]
                if e in _UNESCAPES:
                    out.append(_UNESCAPES[e])
                    i += 1
                elif e in ("x", "u", "U"):
                    width = {"x": 2, "u": 4, "U": 8}[e]
                    digits = text[i + 1:i + 1 + width]
                    try:
                        out.append(chr(int(digits, 16)) if len(digits) == width else "")
                    except (ValueError, OverflowError):
                        raise self.fail("invalid syntax in quoted string") from None
                    if len(digits) != width:
                        raise self.fail("invalid syntax in quoted string")
                    i += 1 + width
                elif e and e in "01234567":
                    digits = text[i:i + 3]
                    try:
                        out.append(chr(int(digits, 8)))
                    except ValueError:
                        raise self.fail("invalid syntax in quoted string") from None
                    i += 3
                else:
                    raise self.fail("invalid syntax in quoted string")
                continue
            out.append(c)
            i += 1
        self.emit(T.STRING, "".join(out))
        self.advance(i + 1)

    def char(self) -> None:
        text = self.text
        close = self.pos + 1
        while close < len(text) and text[close] != "'":
            if text[close] == "\\":
                close += 1
            if close < len(text) and text[close] == "\n":
                raise self.fail("unterminated character constant")
            close += 1
        if close >= len(text):
            raise self.fail("unterminated character constant")
        body = text[self.pos + 1:close]
        if body.startswith("\\"):
            if body[1:] in _UNESCAPES:
                value = _UNESCAPES[body[1:]]
            elif body[1:2] in ("x", "u", "U"):
                try:
                    value = chr(int(body[2:], 16))
                except (ValueError, OverflowError):
                    raise self.fail("malformed character constant") from None
            else:
                raise self.fail("malformed character constant")
        else:
            value = body
        if len(value) != 1:
            raise self.fail("malformed character constant")
        self.emit(T.CHAR, ord(value))
        self.advance(close + 1)

    def number(self) -> None:
        text = self.text
        end = self.pos
        if text[end] in "+-":
            end += 1
        while end < len(text) and (_is_alnum(text[end]) or text[end] in ".+-"):
            if text[end] in "+-" and text[end - 1] not in "eEpP":
                break
            end += 1
        literal = text[self.pos:end]
        if not _NUMBER.fullmatch(literal):
            raise self.fail(f'bad number syntax: "{literal}"')
        self.emit(T.NUMBER, literal)
        self.advance(end)


def lex(text: str) -> list[Token]:
    """The tokens of ``text``; :class:`ParseError` for what Go's lexer refuses."""
    return _Lexer(text).run()
