"""Go ``text/template`` conformance: template -> output, written from Go's documentation
(https://pkg.go.dev/text/template) and what Go prints, for every construct VSO templates use;
then the errors, which name the line and never a value."""

from __future__ import annotations

from typing import Any

import pytest

from syncd import gotemplate
from syncd.gotemplate import ExecError, ParseError
from syncd.gotemplate.values import JSONNumber, Struct
from syncd.rendering import compile_template
from syncd.templating import JINJA2_MARKER, TemplateFailed, compile_text, render_template

DATA: dict[str, Any] = {
    "a": "A", "b": 2, "s": "str", "empty": "", "zero": 0, "f": False, "t": True,
    "l": [1, 2], "l5": [1, 2, 3, 4, 5], "e": [], "em": {}, "nested": [[1, 2], [3, 4]],
    "m": {"b": 2, "a": 1}, "mn": {"k": None, "x": ["y", "z"]}, "name": "n",
    "num": JSONNumber("5432"),
}

CASES: list[tuple[str, str]] = [
    # Text, spaces and comments.
    ("plain text", "plain text"),
    ("{{23 -}} < {{- 45}}", "23<45"),
    ("a {{- 1 }} b", "a1 b"),
    ("a\n  {{- 1 -}}\n  b", "a1b"),
    ("a{{/* a comment */}}b", "ab"),
    ("a {{- /* a comment */ -}} b", "ab"),
    ("{{-3}}", "-3"),
    # Pipelines: every spelling in the documentation prints "output", quoted.
    ('{{"output"}}', "output"),
    ('{{`"output"`}}', '"output"'),
    ('{{printf "%q" "output"}}', '"output"'),
    ('{{"output" | printf "%q"}}', '"output"'),
    ('{{printf "%q" (print "out" "put")}}', '"output"'),
    ('{{"put" | printf "%s%s" "out" | printf "%q"}}', '"output"'),
    ('{{"output" | printf "%s" | printf "%q"}}', '"output"'),
    ('{{with "output"}}{{printf "%q" .}}{{end}}', '"output"'),
    ('{{with $x := "output" | printf "%q"}}{{$x}}{{end}}', '"output"'),
    ('{{with $x := "output"}}{{printf "%q" $x}}{{end}}', '"output"'),
    ('{{with $x := "output"}}{{$x | printf "%q"}}{{end}}', '"output"'),
    # Fields, keys and Go's printing.
    ("{{.a}}{{.b}}", "A2"),
    ("{{.m}}", "map[a:1 b:2]"),
    ("{{.mn}}", "map[k:<nil> x:[y z]]"),
    ("{{.l}} {{.e}} {{.em}}", "[1 2] [] map[]"),
    ("{{.nope}}|{{.nope.deeper}}|{{.mn.k}}", "<no value>|<no value>|<no value>"),
    ("{{.t}} {{.f}} {{1.5}} {{1e6}} {{0x10}} {{0o17}} {{1_000}} {{'a'}}",
     "true false 1.5 1e+06 16 15 1000 97"),
    ('{{"a\\tb\\u00e9"}}|{{`a\\tb`}}', "a\tb\u00e9|a\\tb"),
    ("{{.num}}", "5432"),
    ("{{(.m).a}} {{(index .nested 1)}}", "1 [3 4]"),
    # if / else if / else, with / else with, and Go's truth.
    ("{{if .b}}A{{else if .a}}B{{else}}C{{end}}", "A"),
    ("{{if .zero}}A{{else if .a}}B{{else}}C{{end}}", "B"),
    ("{{if .zero}}A{{else if .empty}}B{{else}}C{{end}}", "C"),
    ("{{if .nope}}t{{else}}f{{end}}{{if .e}}t{{else}}f{{end}}{{if .em}}t{{else}}f{{end}}"
     "{{if 0.0}}t{{else}}f{{end}}{{if .f}}t{{else}}f{{end}}{{if .l}}t{{else}}f{{end}}"
     "{{if .m}}t{{else}}f{{end}}{{if .s}}t{{else}}f{{end}}", "fffffttt"),
    ("{{with .nope}}x{{else}}none{{end}}", "none"),
    ("{{with .zero}}{{.}}{{else with .b}}[{{.}}]{{end}}", "[2]"),
    ("{{with .m}}{{.a}}{{end}}", "1"),
    # range: slices, maps in key order, ints, else, break and continue.
    ("{{range .l}}[{{.}}]{{end}}", "[1][2]"),
    ("{{range .e}}x{{else}}empty{{end}}", "empty"),
    ("{{range .nope}}x{{else}}nil{{end}}", "nil"),
    ("{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ("{{range $v := .m}}{{$v}}{{end}}", "12"),
    ("{{range $i, $v := .l}}{{$i}}:{{$v}} {{end}}", "0:1 1:2 "),
    ("{{range 3}}{{.}}{{end}}|{{range $i := 3}}{{$i}}{{end}}|{{range 0}}x{{else}}none{{end}}",
     "012|012|none"),
    ("{{range .l5}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
     "13"),
    ("{{range .nested}}{{range .}}{{.}}{{end}};{{end}}", "12;34;"),
    # Variables: declared, assigned, scoped to their block; $ is the data.
    ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
    ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", "21"),
    ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{$x := 0}}{{range .l}}{{$x = .}}{{end}}{{$x}}", "2"),
    ("{{range .l}}{{$.name}}{{end}}", "nn"),
    ("{{$m := .m}}{{$m.a}}", "1"),
    # define / template / block.
    ('{{define "T1"}}ONE{{end}}{{define "T2"}}TWO{{end}}'
     '{{define "T3"}}{{template "T1"}} {{template "T2"}}{{end}}{{template "T3"}}', "ONE TWO"),
    ('{{define "t"}}[{{.}}]{{end}}{{template "t" .a}}{{template "t"}}', "[A][<no value>]"),
    ('{{block "b" .s}}<{{.}}>{{end}}', "<str>"),
    ('{{define "t"}}{{$}}{{end}}{{template "t" 5}}', "5"),
    # The builtin functions.
    ("{{and 1 0}} {{and 1 2}} {{or 0 .empty}}|{{or 0 \"x\"}} {{not 0}} {{not .l}}",
     "0 2 |x true false"),
    ("{{and .nope (index .nope 1)}}", "<no value>"),  # and stops at the first false value
    ('{{len "héllo"}} {{len .l}} {{len .m}}', "6 2 2"),
    ('{{index .m "a"}} {{index .l 1}} {{index .nested 1 0}} {{index .m "zz"}} {{index "ab" 0}}',
     "1 2 3 <no value> 97"),
    ('{{print "a" 1 2 "b"}}|{{print 1 2}}|{{println "a" 1}}', "a1 2b|1 2|a 1\n"),
    ('{{printf "%d-%s-%v-%05.2f-%x-%5s|%-5s|%t-%c-%%" 3 "x" .m 3.14159 255 "r" "l" true 65}}',
     "3-x-map[a:1 b:2]-03.14-ff-    r|l    |true-A-%"),
    ('{{printf "%s %d"  "only"}}|{{printf "%d" "s"}}|{{printf "x" 1}}',
     "only %!d(MISSING)|%!d(string=s)|x%!(EXTRA int=1)"),
    ("{{eq 1 1}} {{eq 1 2 1}} {{eq .num \"5432\"}} {{ne .a \"B\"}} {{eq .nope 1}}",
     "true true true true false"),
    ('{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}} {{lt 1.5 2.5}}',
     "true true true false true"),
    ("{{html \"<a href='x'>&\"}}", "&lt;a href=&#39;x&#39;&gt;&amp;"),
    ('{{js "it\'s <b>"}}', "it\\'s \\u003Cb\\u003E"),
    ('{{urlquery "a b&c/d"}}', "a+b%26c%2Fd"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_go_template_conformance(text: str, expected: str) -> None:
    assert gotemplate.render(text, DATA) == expected


ERRORS: list[tuple[str, type[Exception], str, int | None]] = [
    # Refused when parsed (Go's template.Parse).
    ("{{nosuch .}}", ParseError, 'function "nosuch" not defined', 1),
    ("{{env \"HOME\"}}{{expandenv \"$HOME\"}}", ParseError, 'function "env" not defined', 1),
    ('a\nb\n{{.a | "x"}}', ParseError, "non executable command in pipeline stage 2", 3),
    ("{{.a | .}}", ParseError, "non executable command in pipeline stage 2", 1),
    ("a\n{{.a", ParseError, "unclosed action", 2),
    ("{{(.a}}", ParseError, "unclosed left paren", 1),
    ("{{.a)}}", ParseError, "unexpected right paren", 1),
    ("{{if}}{{end}}", ParseError, "missing value for if", 1),
    ("{{}}", ParseError, "missing value for command", 1),
    ("x{{end}}", ParseError, "unexpected {{end}}", 1),
    ("{{if 1}}\nx", ParseError, "unexpected EOF", 2),
    ("{{break}}", ParseError, "{{break}} outside {{range}}", 1),
    ("{{$x}}", ParseError, 'undefined variable "$x"', 1),
    ("{{if true}}{{$x := 1}}{{end}}{{$x}}", ParseError, 'undefined variable "$x"', 1),
    ("{{/* open", ParseError, "unclosed comment", 1),
    ('{{"open}}', ParseError, "unterminated quoted string", 1),
    ("{{1e}}", ParseError, 'bad number syntax: "1e"', 1),
    ("{{.Secrets.api-key}}", ParseError, 'bad number syntax: "-key"', 1),
    ("{{.a @}}", ParseError, "unrecognized character in action: U+0040 '@'", 1),
    ("{{range $a, $b, $c := .l}}{{end}}", ParseError, "too many declarations in range", 1),
    ('{{bcrypt "x"}}', ParseError, 'function "bcrypt" is not supported by vault-syncd', 1),
    ('{{define "a"}}{{else}}{{end}}', ParseError, "unexpected {{else}} in define clause", 1),
    ("{{if 1}}{{else}}{{else}}{{end}}", ParseError, "expected end; found {{else}}", 1),
    ("{{else}}", ParseError, "unexpected {{else}}", 1),
    # Refused when run (Go's Execute).
    ("{{upper}}", ExecError, "wrong number of args for upper: want 1 got 0", 1),
    ('x\n{{upper "a" "b"}}', ExecError, "wrong number of args for upper: want 1 got 2", 2),
    ("{{upper .num}}", ExecError, "wrong type for value; expected string; got json.Number", 1),
    ("{{.nope | upper}}", ExecError, "invalid value; expected string", 1),
    ("{{repeat 1.5 \"x\"}}", ExecError, "expected integer; found 1.5", 1),
    ('{{template "nope"}}', ExecError, 'no such template "nope"', 1),
    ("{{.s.deeper}}", ExecError, "can't evaluate field deeper in type string", 1),
    ("{{index .l 5}}", ExecError, "error calling index: index out of range", 1),
    ("{{index .m 1}}", ExecError, "error calling index: value has type int; should be string", 1),
    ("{{1 2}}", ExecError, "can't give argument to non-function", 1),
    ("{{nil}}", ExecError, "nil is not a command", 1),
    ("{{eq .l 1}}", ExecError, "error calling eq: uncomparable type []interface {}", 1),
    ('{{eq 1 "1"}}', ExecError, "error calling eq: incompatible types for comparison", 1),
    ("{{lt true false}}", ExecError, "error calling lt: invalid type for comparison", 1),
    ("{{range 1.5}}{{end}}", ExecError, "range can't iterate over value of type float64", 1),
    ("{{range $i, $v := 3}}{{end}}", ExecError,
     "can't use an integer to iterate over more than one variable", 1),
    ('{{define "a"}}{{template "a"}}{{end}}{{template "a"}}', ExecError,
     "exceeded maximum template depth (100)", 1),
    ("{{.m.a 1}}", ExecError, "a is not a method but has arguments", 1),
    ("{{len 3}}", ExecError, "error calling len: len of type int", 1),
]


@pytest.mark.parametrize(("text", "error", "message", "line"), ERRORS)
def test_go_template_errors(text: str, error: type[Exception], message: str,
                            line: int | None) -> None:
    with pytest.raises(error) as info:
        gotemplate.render(text, DATA)
    assert isinstance(info.value, gotemplate.TemplateError)
    assert (info.value.message, info.value.line) == (message, line)


def test_the_input_is_vsos_secret_input() -> None:
    """What VSO passes: a struct with Secrets, Metadata, Annotations, Labels (and WrapData);
    Vault's numbers are json.Number; a field the struct lacks is an error, unlike a map key."""
    context = {"secrets": {"password": "pw", "port": 5432, "ratio": 0.5, "tags": ["a"]},
               "metadata": {"version": 3, "custom_metadata": {"owner": "team-a"}},
               "labels": {"app": "web"}, "annotations": {"myapp.config/host": "db"}}
    text = ('{{ .Secrets.password }} {{ get .Secrets "port" }} {{ .Secrets.ratio }} '
            '{{ .Secrets.tags }} {{ .Metadata.version }} {{ .Metadata.custom_metadata.owner }} '
            '{{ .Labels.app }} {{ get .Annotations "myapp.config/host" }} {{ .WrapData }} '
            '{{ .Secrets | toJson }}')
    assert render_template(text, context) == (
        'pw 5432 0.5 [a] 3 team-a web db map[] '
        '{"password":"pw","port":5432,"ratio":0.5,"tags":["a"]}')
    assert gotemplate.secret_input(context).type_name == "*helpers.SecretInput"
    assert isinstance(gotemplate.secret_input(context), Struct)
    assert render_template("{{ . }}|{{ toJson . }}", {"secrets": {"n": 1}}) == (
        '&{map[n:1] map[] map[] map[] map[]}|'
        '{"secrets":{"n":1},"metadata":{},"annotations":{},"labels":{}}')
    with pytest.raises(TemplateFailed) as info:
        render_template("{{ .secrets.password }}", context)
    assert info.value.failure.describe() == (
        "can't evaluate field secrets in type *helpers.SecretInput (line 1)")


def test_templates_of_one_resource_share_their_definitions() -> None:
    templates = [compile_template(key="helpers",
                                  text='{{ define "dsn" }}db://{{ .Secrets.user }}{{ end }}'),
                 compile_template(key="dsn", text='{{ template "dsn" . }}')]
    siblings = {t.set_name: t.text for t in templates}
    context = {"secrets": {"user": "u"}}
    # A definition named like a template's key does not replace that template.
    assert [render_template(t.text, context, name=t.set_name, siblings=siblings)
            for t in templates] == ["", "db://u"]


def test_a_template_is_called_by_its_name() -> None:
    named = compile_template(key="greeting", text="hi {{ .Labels.app }}", name="greet")
    unnamed = compile_template(key="call", text='{{ template "greet" . }}!')
    assert (named.set_name, unnamed.set_name) == ("greet", "templates[call]")
    siblings = {t.set_name: t.text for t in (named, unnamed)}
    assert render_template(unnamed.text, {"labels": {"app": "web"}}, name=unnamed.set_name,
                           siblings=siblings) == "hi web!"


def test_jinja2_only_behind_its_marker() -> None:
    context = {"secrets": {"user": "u"}}
    assert render_template(f"{JINJA2_MARKER}\n{{{{ secrets.user }}}}!", context) == "u!"
    assert render_template(f"{JINJA2_MARKER}  \n{{{{ secrets.user }}}}", context) == "u"
    # Anywhere else the marker is what Go makes of it: a syntax error.
    with pytest.raises(TemplateFailed) as info:
        render_template(f"\n{JINJA2_MARKER}\n{{{{ secrets.user }}}}", context)
    assert info.value.failure.kind.startswith("template syntax error on line 2:")
    # Jinja's own line numbers count the marker line, as the text is written.
    with pytest.raises(TemplateFailed) as info:
        render_template(f"{JINJA2_MARKER}\nok\n{{{{ secrets.nope }}}}", context)
    assert info.value.failure.describe() == "undefined: 'nope' (line 3)"
    assert type(compile_text(f"{JINJA2_MARKER}\nx")).__module__ == "syncd.templating"
    assert type(compile_text("{{ .Secrets.x }}")).__module__ == "syncd.gotemplate"


SECRET = "hunter2-s3cr3t-42"


@pytest.mark.parametrize("text", [
    "{{ fail .Secrets.password }}",
    "{{ index .Secrets (.Secrets.password) }}{{ index .Secrets.list (atoi .Secrets.pin) }}",
    "{{ index .Secrets.list (atoi .Secrets.pin) }}",
    '{{ regexMatch .Secrets.password "x" }}{{ mustRegexMatch (printf "(%s" .Secrets.password) '
    '"x" }}',
    "{{ range .Secrets.password }}{{ end }}",
    "{{ template .Secrets.password }}",
    "{{ printf \"%s\" .Secrets.password | atoi | upper }}",
    "{{ .Secrets.password.field }}",
    "{{ mustFromJson .Secrets.password }}",
    "{{ div 1 (atoi .Secrets.pin | sub 42) }}",
])
def test_errors_never_hold_a_value(text: str) -> None:
    context = {"secrets": {"password": SECRET, "pin": "42", "list": [1]}}
    with pytest.raises(TemplateFailed) as info:
        render_template(text, context)
    shown = info.value.failure.describe()
    assert SECRET not in shown and "42" not in shown, shown
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_fail_shows_a_message_written_in_the_template() -> None:
    with pytest.raises(TemplateFailed) as info:
        render_template('{{ if not .Secrets.x }}{{ fail "x is required" }}{{ end }}', {})
    assert info.value.failure.describe() == "error calling fail: x is required (line 1)"


def test_output_and_loops_are_bounded() -> None:
    with pytest.raises(TemplateFailed) as info:
        render_template("{{ range 2000000 }}xxxxxxxxxx{{ end }}", {})
    assert info.value.failure.kind == "the output is larger than the 1 MiB Secret limit"
    with pytest.raises(TemplateFailed) as info:
        render_template('{{ repeat 2000000 "x" }}', {})
    assert "1 MiB" in info.value.failure.kind
    with pytest.raises(TemplateFailed) as info:
        render_template("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", {})
    assert info.value.failure.kind in ("template syntax error: the template is nested too "
                                       "deeply to parse",)
