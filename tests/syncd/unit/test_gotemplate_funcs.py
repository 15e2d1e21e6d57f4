"""The functions VSO gives templates: its allow-list of Sprig functions, with Sprig's semantics
(https://masterminds.github.io/sprig/), and nothing that reads files, the environment or the
network."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from syncd import gotemplate
from syncd.gotemplate.funcs import SPRIG, UNSUPPORTED
from syncd.gotemplate.values import JSONNumber

# VSO v1.4.1's allow-list (template/funcs.go: allowedSprigFuncs), by name.
_VSO_NAMES = """
abbrev abbrevboth add add1 add1f addf adler32sum ago all any append atoi b32dec b32enc
b64dec b64enc base bcrypt biggest buildCustomCert camelcase cat ceil chunk clean coalesce
compact concat contains deepCopy deepEqual default dict dig dir div divf duration
durationRound empty ext fail first float64 floor fromJson get has hasKey hasPrefix hasSuffix
htpasswd indent initial initials int int64 isAbs join kebabcase keys kindIs kindOf last list
lower max maxf merge mergeOverwrite min minf mod mul mulf mustAppend mustChunk mustCompact
mustDeepCopy mustFirst mustFromJson mustHas mustInitial mustLast mustMerge
mustMergeOverwrite mustPrepend mustPush mustRegexFind mustRegexFindAll mustRegexMatch
mustRegexReplaceAll mustRegexReplaceAllLiteral mustRegexSplit mustRest mustReverse mustSlice
mustToDate mustToJson mustToPrettyJson mustToRawJson mustUniq mustWithout nindent nospace
omit osBase osClean osDir osExt osIsAbs pick pluck plural prepend push quote randInt
regexFind regexFindAll regexMatch regexQuoteMeta regexReplaceAll regexReplaceAllLiteral
regexSplit repeat replace rest reverse round semver semverCompare seq set sha1sum sha256sum
sha512sum shuffle slice snakecase sortAlpha split splitList splitn squote sub subf substr
swapcase ternary title toDecimal toJson toPrettyJson toRawJson toString toStrings trim
trimAll trimPrefix trimSuffix trimall trunc tuple typeIs typeIsLike typeOf uniq unset until
untilStep untitle upper urlJoin urlParse values without wrap wrapWith
"""
VSO_FUNCTIONS = tuple(_VSO_NAMES.split())


def test_every_function_vso_allows_is_here_or_refused_by_name() -> None:
    assert len(VSO_FUNCTIONS) == 179
    assert set(VSO_FUNCTIONS) == set(SPRIG) | UNSUPPORTED
    assert not set(SPRIG) & UNSUPPORTED
    # Sprig functions VSO leaves out (the environment, files, crypto, time) are undefined.
    for name in ("env", "expandenv", "genPrivateKey", "derivePassword", "now", "date",
                 "randAlphaNum", "uuidv4", "getHostByName"):
        with pytest.raises(gotemplate.ParseError, match=f'function "{name}" not defined'):
            gotemplate.compile_text(f"{{{{ {name} }}}}")


DATA: dict[str, Any] = {
    "s": "Hello World", "pw": "p@ss", "n": JSONNumber("42"), "list": ["b", "a", "c", "a"],
    "m": {"a": 1, "b": {"c": "deep"}}, "json": '{"x": [1, 2], "y": "z", "f": 1.5}',
    "empty": "", "url": "https://user:pw@example.com:8443/a/b?q=1#frag",
}

CASES: list[tuple[str, str]] = [
    # Strings.
    ('{{ "hello" | upper }} {{ "HeLLo" | lower }} {{ "  x  " | trim }}', "HELLO hello x"),
    ('{{ trimAll "$" "$5.00$" }} {{ trimPrefix "-" "-x" }} {{ trimSuffix "-" "x-" }}',
     "5.00 x x"),
    ('{{ "hello world" | title }} {{ "Hello World" | untitle }}', "Hello World hello world"),
    ('{{ abbrev 5 "hello world" }} {{ abbrevboth 5 10 "1234 5678 9123" }}', "he... ...5678..."),
    ('{{ substr 0 5 "hello world" }} {{ trunc 5 "hello world" }} {{ trunc -5 "hello world" }}',
     "hello hello world"),
    ('{{ repeat 3 "ab" }} {{ replace " " "-" "a b c" }} {{ nospace "a b\tc" }}',
     "ababab a-b-c abc"),
    ('{{ contains "cat" "catch" }} {{ hasPrefix "cat" "catch" }} {{ hasSuffix "ch" "catch" }}',
     "true true true"),
    ('{{ quote "a" 1 }} {{ squote "b" }} {{ cat "a" 1 .nope "b" }}', '"a" "1" \'b\' a 1 b'),
    ('{{ indent 2 "a\\nb" }}|{{ nindent 2 "a" }}', "  a\n  b|\n  a"),
    ('{{ "hello_world" | camelcase }} {{ "HelloWorld" | snakecase }} '
     '{{ "HelloWorld" | kebabcase }} {{ "Hello World" | swapcase }} {{ "Hello World" | initials }}',
     "HelloWorld hello_world hello-world hELLO wORLD HW"),
    ('{{ plural "one" "many" 1 }} {{ plural "one" "many" 2 }} {{ wrap 5 "aaa bbb ccc" }}',
     "one many aaa\nbbb\nccc"),
    ('{{ $p := split "$" "foo$bar$baz" }}{{ $p._0 }} {{ $p._2 }} '
     '{{ splitList "," "a,b" }} {{ (splitn "$" 2 "a$b$c")._1 }}', "foo baz [a b] b$c"),
    ('{{ join "," .list }} {{ sortAlpha .list }} {{ toStrings (list 1 "x") }}',
     "b,a,c,a [a a b c] [1 x]"),
    ('{{ .pw | b64enc }} {{ "cEBzcw==" | b64dec }} {{ .pw | b32enc }} {{ "OBAHG4Y=" | b32dec }}',
     "cEBzcw== p@ss OBAHG4Y= p@ss"),
    ('{{ sha256sum "x" }}', "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"),
    ('{{ sha1sum "x" }} {{ adler32sum "x" }}', "11f6ad8ec52a2984abaafd7c3b516503785c2072 7929977"),
    ('{{ toString 1 }} {{ toString .n }} {{ toString .nope }}', "1 42 <nil>"),
    # Regular expressions (Go's syntax: $1 and ${name} in replacements).
    ('{{ regexMatch "^[a-z]+$" "abc" }} {{ regexFind "[0-9]+" "ab12cd34" }} '
     '{{ regexFindAll "[0-9]" "a1b2c3" 2 }}', "true 12 [1 2]"),
    ('{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }} '
     '{{ regexReplaceAllLiteral "a(x*)b" "-ab-axxb-" "${1}" }} {{ regexSplit "z+" "pizza" -1 }} '
     '{{ regexQuoteMeta "1.2" }}', "-W-xxW- -${1}-${1}- [pi a] 1\\.2"),
    ('{{ regexMatch "(" "x" }}', "false"),  # Sprig's non-must form: no error
    # Numbers (Sprig converts what it is given: strings, json.Number).
    ("{{ add 1 2 3 }} {{ add1 .n }} {{ sub 5 7 }} {{ mul 2 3 4 }} {{ div 7 2 }} {{ div -7 2 }} "
     "{{ mod 7 3 }} {{ max 1 5 3 }} {{ min 4 2 }} {{ biggest 1 9 }}",
     "6 43 -2 24 3 -3 1 5 2 9"),
    ("{{ add 9223372036854775807 1 }} {{ mul 4294967296 4294967296 }}",
     "-9223372036854775808 0"),  # int64 wraps around, as in Go
    ('{{ atoi "12" }} {{ atoi "x" }} {{ int "7" }} {{ int64 .n }} {{ float64 "1.5" }} '
     '{{ toDecimal "0777" }}', "12 0 7 42 1.5 511"),
    ("{{ addf 1.5 2 }} {{ subf 2 0.5 }} {{ mulf 1.5 2 }} {{ divf 1 4 }} {{ maxf 1 2.5 }} "
     "{{ minf 1 2.5 }} {{ add1f 1.5 }}", "3.5 1.5 3 0.25 2.5 1 2.5"),
    ("{{ ceil 1.2 }} {{ floor 1.8 }} {{ round 3.746 2 }} {{ round 3.745 2 0.6 }}",
     "2 1 3.75 3.74"),
    ("{{ until 3 }} {{ untilStep 0 10 4 }} {{ seq 3 }} {{ seq 2 4 }} {{ seq 0 2 6 }}",
     "[0 1 2] [0 4 8] 1 2 3 2 3 4 0 2 4 6"),
    # Lists.
    ('{{ list 1 "a" }} {{ first .list }} {{ last .list }} {{ rest .list }} {{ initial .list }}',
     "[1 a] b a [a c a] [b a c]"),
    ("{{ reverse .list }} {{ uniq .list }} {{ without .list \"a\" }} {{ has \"c\" .list }} "
     "{{ has \"z\" .list }}", "[a c a b] [b a c] [b c] true false"),
    ('{{ append .list "d" }} {{ prepend .list "z" }} {{ concat (list 1) (list 2 3) }} '
     '{{ compact (list 1 "" 0 "x") }} {{ chunk 2 (list 1 2 3) }} {{ slice .list 1 3 }}',
     "[b a c a d] [z b a c a] [1 2 3] [1 x] [[1 2] [3]] [a c]"),
    ('{{ tuple 1 2 }} {{ push (list) 1 }} {{ mustFirst (list) }}', "[1 2] [1] <no value>"),
    # Dictionaries.
    ('{{ $d := dict "k" "v" "n" 1 }}{{ $d }} {{ get $d "k" }} {{ get $d "zz" }}|'
     '{{ hasKey $d "n" }} {{ keys $d }} {{ values $d }}', "map[k:v n:1] v |true [k n] [v 1]"),
    ('{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ $d }} {{ unset $d "a" }}',
     "map[a:1 b:2] map[b:2]"),
    ('{{ pick .m "a" }} {{ omit .m "a" }} {{ pluck "a" .m (dict "a" 3) }} '
     '{{ dig "b" "c" "none" .m }} {{ dig "b" "x" "none" .m }}',
     "map[a:1] map[b:map[c:deep]] [1 3] deep none"),
    ('{{ merge (dict "a" 1) (dict "a" 2 "b" 2) }} {{ mergeOverwrite (dict "a" 1) (dict "a" 2) }}',
     "map[a:1 b:2] map[a:2]"),
    ("{{ deepCopy .m }} {{ deepEqual (list 1) (list 1) }}", "map[a:1 b:map[c:deep]] true"),
    # Defaults, flow and types.
    ('{{ default "d" .empty }} {{ default "d" "given" }} {{ default "d" .nope }} '
     '{{ empty .empty }} {{ empty 1 }}', "d given d true false"),
    ('{{ coalesce .nope "" "first" }} {{ all 1 "a" }} {{ all 1 "" }} {{ any 0 "" "x" }}',
     "first true false true"),
    ('{{ ternary "yes" "no" true }} {{ true | ternary "yes" "no" }}', "yes yes"),
    ('{{ kindOf "x" }} {{ kindOf .m }} {{ kindOf .list }} {{ kindOf .n }} {{ kindIs "map" .m }} '
     '{{ typeOf 1 }} {{ typeOf .n }} {{ typeIs "string" "x" }}',
     "string map slice string true int json.Number true"),
    # JSON: Vault's numbers stay as written; fromJson's are float64.
    ('{{ .m | toJson }} {{ toJson .n }} {{ toJson "<&>" }} {{ toRawJson "<&>" }}',
     '{"a":1,"b":{"c":"deep"}} 42 "\\u003c\\u0026\\u003e" "<&>"'),
    ('{{ toPrettyJson (dict "a" 1) }}', '{\n  "a": 1\n}'),
    ('{{ $j := fromJson .json }}{{ $j.y }} {{ index $j.x 1 }} {{ $j.f }} {{ $j }}',
     "z 2 1.5 map[f:1.5 x:[1 2] y:z]"),
    ('{{ fromJson "not json" }}|{{ toJson (fromJson "[1e+21, 1e-7, 0.5]") }}',
     "<no value>|[1e+21,1e-7,0.5]"),
    # Paths and URLs.
    ('{{ base "/a/b.txt" }} {{ dir "/a/b.txt" }} {{ ext "b.tar.gz" }} {{ clean "a//b/../c" }} '
     '{{ isAbs "/a" }} {{ osBase "a/b" }}', "b.txt /a .gz a/c true b"),
    ('{{ $u := urlParse .url }}{{ $u.scheme }} {{ $u.host }} {{ $u.hostname }} {{ $u.path }} '
     '{{ $u.query }} {{ $u.fragment }} {{ $u.userinfo }}',
     "https example.com:8443 example.com /a/b q=1 frag user:pw"),
    ('{{ urlJoin (dict "scheme" "https" "host" "h" "path" "/p" "query" "x=1") }}',
     "https://h/p?x=1"),
    # Semantic versions (Masterminds/semver v3's rules, as Sprig documents them).
    ('{{ semver "v1.2" }} {{ (semver "1.2.3-alpha.1+b5").Prerelease }} '
     '{{ (semver "1.2.3-alpha.1+b5").Metadata }} {{ (semver "4.5.6").Major }}',
     "1.2.0 alpha.1 b5 4"),
    ('{{ semverCompare "^1.2.0" "1.2.3" }} {{ semverCompare "~1.2.0" "1.3.0" }} '
     '{{ semverCompare ">= 1.2.3, < 2" "1.5" }} {{ semverCompare "1.2.x" "1.2.9" }} '
     '{{ semverCompare "1.2 - 1.4.5" "1.4.6" }} {{ semverCompare "^0.2.3" "0.3.0" }}',
     "true false true true false false"),
    ('{{ semverCompare "<1.0 || >=2.0" "2.1" }} {{ semverCompare ">1.0" "1.1.0-beta" }} '
     '{{ semverCompare ">1.0.0-alpha" "1.0.0-beta" }} {{ semverCompare "*" "3.2.1" }} '
     '{{ semverCompare "~1" "1.9.0" }} {{ semverCompare ">=1.2.3 <1.3" "1.2.9" }}',
     "true false true true true true"),
    # Times: Go layouts, Go's printing, and the methods a template calls.
    ('{{ mustToDate "2006-01-02" "2024-01-02" }}|'
     '{{ (mustToDate "2006-01-02T15:04:05Z07:00" "2024-03-04T05:06:07+02:00") }}|'
     '{{ (mustToDate "2006-01-02T15:04:05Z07:00" "2024-03-04T05:06:07+02:00").Unix }}',
     "2024-01-02 00:00:00 +0000 UTC|2024-03-04 05:06:07 +0200 +0200|1709521567"),
    ('{{ $t := mustToDate "2006-01-02 15:04:05.000" "2024-03-04 15:06:07.250" }}{{ $t }}|'
     '{{ $t.Format "Jan 2, 2006 at 3:04pm (MST)" }}|{{ $t.Year }} {{ typeOf $t }}|'
     '{{ (mustToDate "02/01/06" "31/12/99").Format "Monday 2006-01-02" }}',
     "2024-03-04 15:06:07.25 +0000 UTC|Mar 4, 2024 at 3:06pm (UTC)|2024 time.Time|"
     "Friday 1999-12-31"),
    # Durations: seconds as a string or an int64 (what Sprig's arithmetic returns); an int
    # constant is not an int64 and counts as 0, as in Go.
    ('{{ duration "95" }} {{ duration (add 3600 0) }} {{ duration 95 }} {{ duration "x" }}',
     "1m35s 1h0m0s 0s 0s"),
    ('{{ durationRound "2h30m" }} {{ durationRound "-90s" }} {{ durationRound 7200 }} '
     '{{ durationRound (mul 3 86400 1000000000) }} {{ typeOf (add 1 1) }}',
     "2h -1m 0s 3d int64"),
    ("{{ ago 0 | len | lt 5 }} {{ ago \"x\" }}", "true 0s"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_sprig_functions(text: str, expected: str) -> None:
    assert gotemplate.render(text, DATA) == expected


@pytest.mark.parametrize(("text", "message"), [
    ('{{ mustRegexMatch "(" "x" }}', "error calling mustRegexMatch: invalid regular expression"),
    ('{{ mustFromJson "nope" }}', "error calling mustFromJson: the input is not valid JSON"),
    ("{{ div 1 0 }}", "error calling div: integer divide by zero"),
    ('{{ first "abc" }}', "error calling first: cannot find first on a value of type string"),
    ('{{ repeat 2000000 "x" }}',
     "error calling repeat: a result larger than the 1 MiB Secret limit is refused"),
    ("{{ until 2000000 }}", "error calling until: a list larger than 1048576 elements is refused"),
    ('{{ semver "nope" }}', "error calling semver: Invalid Semantic Version"),
    ('{{ mustToDate "2006-01-02" "2024-13-02" }}',
     "error calling mustToDate: the value is out of range for its layout"),
    ('{{ mustToDate "2006-01-02" "2024/01/02" }}',
     "error calling mustToDate: the value does not match the layout"),
    ('{{ semverCompare "what" "1.0" }}', "error calling semverCompare: improper constraint"),
    ("{{ get .list 0 }}", "wrong type for value; expected map[string]interface {}; "
                          "got []interface {}"),
])
def test_sprig_errors(text: str, message: str) -> None:
    with pytest.raises(gotemplate.ExecError) as info:
        gotemplate.render(text, DATA)
    assert info.value.message == message


CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"


def test_build_custom_cert_gives_the_decoded_pair() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = {"cert": b64(CERT), "key": b64(KEY)}
    text = "{{ $c := buildCustomCert .cert .key }}{{ $c.Cert }}{{ $c.Key }}"
    assert gotemplate.render(text, data) == CERT + KEY
    for cert, key, message in [
        ("%%%", data["key"], "unable to decode base64 certificate"),
        (data["cert"], "%%%", "unable to decode base64 private key"),
        (b64("not pem"), data["key"], "unable to decode certificate"),
        (data["cert"], b64("not pem"), "unable to decode key"),
    ]:
        with pytest.raises(gotemplate.ExecError) as info:
            gotemplate.render(text, {"cert": cert, "key": key})
        assert info.value.message == f"error calling buildCustomCert: {message}"


def test_random_functions_stay_in_their_range() -> None:
    for _ in range(20):
        assert 3 <= int(gotemplate.render("{{ randInt 3 6 }}", {})) < 6
    assert sorted(gotemplate.render('{{ shuffle "abcd" }}', {})) == list("abcd")
