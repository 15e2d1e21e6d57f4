"""Go ``text/template``'s parser (``text/template/parse/parse.go``): tokens into :mod:`nodes`.

What Go refuses when it parses, this refuses, with Go's wording where that wording holds no
value: an undefined function or variable, an unclosed action, a bad pipeline (``{{ "a" | 1 }}``:
"non executable command in pipeline stage 2"), ``{{break}}`` outside ``{{range}}``, a
``{{define}}`` not at the top level. Function names are checked against the function map at
parse time, as Go checks them.
"""

from __future__ import annotations

from collections.abc import Container

from syncd.gotemplate import nodes as n
from syncd.gotemplate.errors import ParseError
from syncd.gotemplate.funcs import UNSUPPORTED
from syncd.gotemplate.lexer import T, Token, lex


def parse_number(text: str, *, line: int) -> int | float:
    """A Go number literal (ints in any base, floats; underscores allowed)."""
    body = text.replace("_", "")
    sign = -1 if body.startswith("-") else 1
    digits = body.lstrip("+-")
    try:
        lower = digits.lower()
        if lower.startswith(("0x", "0o", "0b")) and "p" not in lower and not (
                lower.startswith("0x") and "." in lower):
            return sign * int(digits, 0)
        if lower.startswith("0x"):
            return sign * float.fromhex(digits)
        if len(digits) > 1 and digits.startswith("0") and digits.isdigit():
            return sign * int(digits, 8)
        if digits.isdigit():
            return sign * int(digits)
        value = sign * float(digits)
    except ValueError:
        raise ParseError(f'bad number syntax: "{text}"', line=line) from None
    return value


class _Parser:
    def __init__(self, tokens: list[Token], *, name: str, functions: Container[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.name = name
        self.functions = functions
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.trees: dict[str, n.Tree] = {}

    # -- tokens
    def next(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next_non_space(self) -> Token:
        token = self.next()
        while token.type is T.SPACE:
            token = self.next()
        return token

    def peek_non_space(self) -> Token:
        pos = self.pos
        while self.tokens[pos].type is T.SPACE:
            pos += 1
        return self.tokens[pos]

    def expect(self, type_: T, context: str) -> Token:
        token = self.next_non_space()
        if token.type is not type_:
            raise self.unexpected(token, context)
        return token

    @staticmethod
    def describe(token: Token) -> str:
        if token.type is T.EOF:
            return "EOF"
        if token.type is T.KEYWORD:
            return f"<{token.value}>"
        if token.type is T.RIGHT:
            return "}}"
        if token.type is T.LEFT:
            return "{{"
        names = {T.PIPE: '"|"', T.LPAREN: '"("', T.RPAREN: '")"', T.COMMA: '","',
                 T.DECLARE: '":="', T.ASSIGN: '"="', T.DOT: '"."'}
        if token.type in names:
            return names[token.type]
        if token.type in (T.STRING, T.RAW_STRING):
            return "quoted string"
        if token.type is T.NUMBER:
            return "number"
        if token.type is T.FIELD:
            return f"field .{token.value}"
        if token.type in (T.IDENT, T.VARIABLE):
            return f"{token.value}"
        return token.type.name.lower()

    def unexpected(self, token: Token, context: str) -> ParseError:
        return ParseError(f"unexpected {self.describe(token)} in {context}", line=token.line)

    # -- structure
    def parse(self) -> dict[str, n.Tree]:
        root = n.Tree(self.name)
        while self.peek().type is not T.EOF:
            token = self.peek()
            if token.type is T.LEFT:
                after = self.tokens[self.pos + 1]
                if after.type is T.SPACE:
                    after = self.tokens[self.pos + 2]
                if after.type is T.KEYWORD and after.value == "define":
                    self.next_non_space()
                    self.next_non_space()
                    self.define(after.line)
                    continue
            node = self.text_or_action()
            if isinstance(node, str):
                raise ParseError(f"unexpected {{{{{node}}}}}", line=self.tokens[self.pos - 1].line)
            root.body.append(node)
        self.add(root)
        return self.trees

    def add(self, tree: n.Tree) -> None:
        old = self.trees.get(tree.name)
        if old is not None and old.body and _not_empty(tree.body):
            raise ParseError(f"template: multiple definition of template {tree.name!r}",
                             line=tree.body[0].line if tree.body else None)
        if old is None or _not_empty(tree.body):
            self.trees[tree.name] = tree

    def define(self, line: int) -> None:
        name_token = self.next_non_space()
        if name_token.type not in (T.STRING, T.RAW_STRING):
            raise self.unexpected(name_token, "define clause")
        self.expect(T.RIGHT, "define clause")
        saved = self.vars
        self.vars = ["$"]
        body, end = self.item_list(allow_else=True)
        self.vars = saved
        if end != "end":
            raise ParseError("unexpected {{else}} in define clause", line=line)
        self.add(n.Tree(str(name_token.value), body))

    def item_list(self, *, allow_else: bool) -> tuple[list[n.Node], str]:
        """Nodes up to ``{{end}}`` or ``{{else}}``: the list and which one ended it."""
        out: list[n.Node] = []
        while True:
            token = self.peek()
            if token.type is T.EOF:
                raise ParseError("unexpected EOF", line=token.line)
            node = self.text_or_action()
            if isinstance(node, str):
                if node == "else" and not allow_else:
                    raise ParseError("unexpected {{else}}", line=token.line)
                return out, node
            out.append(node)

    def text_or_action(self) -> n.Node | str:
        token = self.next()
        if token.type is T.TEXT:
            return n.Text(token.line, str(token.value))
        if token.type is T.LEFT:
            return self.action()
        raise self.unexpected(token, "input")

    def action(self) -> n.Node | str:
        token = self.next_non_space()
        if token.type is T.KEYWORD:
            word = str(token.value)
            if word in ("if", "with", "range"):
                return self.branch(word, token.line)
            if word == "block":
                return self.block(token.line)
            if word == "template":
                return self.template(token.line)
            if word in ("break", "continue"):
                self.expect(T.RIGHT, word)
                if not self.range_depth:
                    raise ParseError(f"{{{{{word}}}}} outside {{{{range}}}}", line=token.line)
                return n.Break(token.line) if word == "break" else n.Continue(token.line)
            if word == "end":
                self.expect(T.RIGHT, "end")
                return "end"
            if word == "else":
                return "else"
        self.pos -= 1
        line = self.peek_non_space().line
        return n.Action(line, self.pipeline("command", T.RIGHT))

    def branch(self, keyword: str, line: int) -> n.Branch:
        mark = len(self.vars)
        pipe = self.pipeline(keyword, T.RIGHT)
        if keyword == "range":
            self.range_depth += 1
        body, end = self.item_list(allow_else=True)
        if keyword == "range":
            self.range_depth -= 1
        else_body: list[n.Node] | None = None
        if end == "else":
            following = self.peek_non_space()
            if keyword in ("if", "with") and following.type is T.KEYWORD and \
                    following.value == keyword:
                # {{else if ...}} / {{else with ...}}: a nested branch that shares our {{end}}.
                self.next_non_space()
                else_body = [self.branch(keyword, following.line)]
            else:
                self.expect(T.RIGHT, "else")
                else_line = self.peek().line
                else_body, end = self.item_list(allow_else=True)
                if end != "end":
                    raise ParseError("expected end; found {{else}}", line=else_line)
        del self.vars[mark:]
        return n.Branch(line, keyword, pipe, body, else_body)

    def template(self, line: int) -> n.TemplateCall:
        token = self.next_non_space()
        if token.type not in (T.STRING, T.RAW_STRING):
            raise self.unexpected(token, "template clause")
        pipe = None
        if self.peek_non_space().type is not T.RIGHT:
            pipe = self.pipeline("template clause", T.RIGHT)
        else:
            self.next_non_space()
        return n.TemplateCall(line, str(token.value), pipe)

    def block(self, line: int) -> n.TemplateCall:
        token = self.next_non_space()
        if token.type not in (T.STRING, T.RAW_STRING):
            raise self.unexpected(token, "block clause")
        pipe = self.pipeline("block clause", T.RIGHT)
        saved = self.vars
        self.vars = ["$"]
        body, end = self.item_list(allow_else=True)
        self.vars = saved
        if end != "end":
            raise ParseError("unexpected {{else}} in block clause", line=line)
        self.add(n.Tree(str(token.value), body))
        return n.TemplateCall(line, str(token.value), pipe)

    # -- pipelines
    def pipeline(self, context: str, end: T) -> n.Pipe:
        line = self.peek_non_space().line
        decl: list[str] = []
        is_assign = False
        while self.peek_non_space().type is T.VARIABLE:
            start = self.pos
            variable = self.next_non_space()
            following = self.peek_non_space()
            if following.type in (T.DECLARE, T.ASSIGN):
                self.next_non_space()
                is_assign = following.type is T.ASSIGN
                decl.append(str(variable.value))
                if is_assign and variable.value not in self.vars:
                    raise ParseError(f"undefined variable \"{variable.value}\"",
                                     line=variable.line)
                break
            if following.type is T.COMMA:
                self.next_non_space()
                decl.append(str(variable.value))
                if context == "range" and len(decl) < 2:
                    if self.peek_non_space().type is T.VARIABLE:
                        continue
                    raise ParseError("range can only initialize variables", line=variable.line)
                raise ParseError(f"too many declarations in {context}", line=variable.line)
            self.pos = start
            break
        if decl and not is_assign:
            self.vars.extend(decl)
        cmds: list[n.Command] = []
        while True:
            token = self.peek_non_space()
            if token.type is end:
                self.next_non_space()
                if not cmds:
                    raise ParseError(f"missing value for {context}", line=token.line)
                break
            if token.type is T.PIPE and cmds:
                self.next_non_space()
                continue
            if token.type in (T.BOOL, T.CHAR, T.DOT, T.FIELD, T.IDENT, T.NUMBER, T.KEYWORD,
                              T.RAW_STRING, T.STRING, T.VARIABLE, T.LPAREN):
                cmds.append(self.command())
                continue
            raise self.unexpected(token, context)
        for i, cmd in enumerate(cmds[1:]):
            if isinstance(cmd.args[0], n.Dot | n.Nil | n.Literal):
                raise ParseError(f"non executable command in pipeline stage {i + 2}",
                                 line=cmd.line)
        return n.Pipe(line, decl, is_assign, cmds)

    def command(self) -> n.Command:
        line = self.peek_non_space().line
        args: list[n.Node] = []
        while True:
            self.skip_spaces()
            operand = self.operand()
            if operand is None:
                raise self.unexpected(self.peek(), "operand")
            args.append(operand)
            token = self.peek()
            if token.type is T.SPACE:
                following = self.peek_non_space()
                if following.type in (T.RIGHT, T.RPAREN, T.PIPE):
                    break
                continue
            if token.type in (T.RIGHT, T.RPAREN, T.PIPE):
                break
            raise self.unexpected(token, "operand")
        return n.Command(line, args)

    def skip_spaces(self) -> None:
        while self.peek().type is T.SPACE:
            self.next()

    def operand(self) -> n.Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().type is T.FIELD:
            names: list[str] = []
            while self.peek().type is T.FIELD:
                names.append(str(self.next().value))
            if isinstance(node, n.Field):
                return n.Field(node.line, node.names + tuple(names))
            if isinstance(node, n.Variable):
                return n.Variable(node.line, node.name, node.names + tuple(names))
            if isinstance(node, n.Literal | n.Nil | n.Dot):
                raise ParseError(f"unexpected . after term {self.describe_node(node)}",
                                 line=node.line)
            return n.Chain(node.line, node, tuple(names))
        return node

    @staticmethod
    def describe_node(node: n.Node) -> str:
        if isinstance(node, n.Literal) and node.kind == "string":
            return "quoted string"
        if isinstance(node, n.Literal):
            return str(node.value).lower() if node.kind == "bool" else "number"
        return "nil" if isinstance(node, n.Nil) else "."

    def term(self) -> n.Node | None:
        token = self.next_non_space()
        t = token.type
        if t is T.IDENT:
            name = str(token.value)
            if name in UNSUPPORTED:
                raise ParseError(f'function "{name}" is not supported by vault-syncd',
                                 line=token.line)
            if name not in self.functions:
                raise ParseError(f'function "{name}" not defined', line=token.line)
            return n.Identifier(token.line, name)
        if t is T.DOT:
            return n.Dot(token.line)
        if t is T.KEYWORD and token.value == "nil":
            return n.Nil(token.line)
        if t is T.VARIABLE:
            name = str(token.value)
            if name not in self.vars:
                raise ParseError(f'undefined variable "{name}"', line=token.line)
            return n.Variable(token.line, name)
        if t is T.FIELD:
            return n.Field(token.line, (str(token.value),))
        if t is T.BOOL:
            return n.Literal(token.line, token.value, "bool")
        if t is T.CHAR:
            return n.Literal(token.line, token.value, "number")
        if t is T.NUMBER:
            return n.Literal(token.line, parse_number(str(token.value), line=token.line),
                             "number")
        if t is T.LPAREN:
            return self.pipeline("parenthesized pipeline", T.RPAREN)
        if t in (T.STRING, T.RAW_STRING):
            return n.Literal(token.line, token.value, "string")
        self.pos -= 1
        return None


def _not_empty(body: list[n.Node]) -> bool:
    """Go's IsEmptyTree: a tree of white space only defines nothing."""
    return any(not (isinstance(node, n.Text) and not node.text.strip()) for node in body)


def parse(text: str, *, name: str, functions: Container[str]) -> dict[str, n.Tree]:
    """The templates ``text`` defines, by name: ``name`` itself and each ``{{define}}``."""
    return _Parser(lex(text), name=name, functions=functions).parse()
