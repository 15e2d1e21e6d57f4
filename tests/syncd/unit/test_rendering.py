"""Vault KV data into Secret data: VSO's rules, the template sandbox, Kubernetes' limits.

Templates run in real worker processes (one pool per test), as syncd runs them.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from syncd.rendering import (
    MAX_SECRET_SIZE,
    RenderError,
    SecretData,
    Transformation,
    compile_template,
    go_json,
    key_problem,
    render,
)
from syncd.template_pool import TemplatePool
from syncd.templating import JINJA2_MARKER, MAX_TEMPLATE_LENGTH

#: These tests are of the Jinja2 path: Go templates are the default (see test_gotemplate*).
JINJA = JINJA2_MARKER + "\n"

SECRET = "s3cr3t-Value-7f1c"
METADATA = {"created_time": "2026-01-02T03:04:05.123456Z", "custom_metadata": {"owner": "team-a"},
            "deletion_time": "", "destroyed": False, "version": 7}


@pytest.fixture
async def pool() -> AsyncIterator[TemplatePool]:
    templates = TemplatePool(workers=1)
    yield templates
    await templates.close()


def kv2(data: dict[str, Any] | None) -> dict[str, Any]:
    return {"data": data, "metadata": METADATA}


def transform(*, templates: dict[str, str] | None = None, includes: tuple[str, ...] = (),
              excludes: tuple[str, ...] = (), exclude_raw: bool = False) -> Transformation:
    return Transformation(
        templates={k: compile_template(key=k, text=JINJA + t)
                   for k, t in (templates or {}).items()},
        includes=tuple(re.compile(p) for p in includes),
        excludes=tuple(re.compile(p) for p in excludes),
        exclude_raw=exclude_raw,
    )


Build = Callable[..., Awaitable[SecretData]]
One = Callable[..., Awaitable[str]]


@pytest.fixture
def build(pool: TemplatePool) -> Build:
    """``render`` with the templates rendered by ``pool``."""
    return functools.partial(render, templates=pool)


@pytest.fixture
def one(pool: TemplatePool) -> One:
    """The output of one template (``text``) over ``data`` (default: a password)."""
    async def render_one(text: str, data: dict[str, Any] | None = None, **kwargs: Any) -> str:
        out = await render(
            templates=pool, kv_type="kv-v2",
            data=kv2(data if data is not None else {"password": SECRET}),
            transformation=transform(templates={"out": text}, excludes=(".*",),
                                     exclude_raw=True),
            **kwargs)
        return out["out"].decode()
    return render_one


# --- values and _raw ----------------------------------------------------------------------


async def test_strings_as_is_other_values_as_compact_json(build: Build) -> None:
    data = {"s": "héllo", "i": 42, "f": 1.5, "t": True, "n": None,
            "obj": {"z": 1, "a": [1, "x"]}, "empty": ""}
    out = await build(kv_type="kv-v2", data=kv2(data))
    assert out["s"] == "héllo".encode()
    assert out["i"] == b"42"
    assert out["f"] == b"1.5"
    assert out["t"] == b"true"
    assert out["n"] == b"null"
    assert out["obj"] == b'{"a":[1,"x"],"z":1}'
    assert out["empty"] == b""


def test_json_is_gos() -> None:
    # Go's json.Marshal escapes these, even inside strings, and writes UTF-8 as is.
    expected = '{"a":"é\\u2028","b":"\\u003ca\\u0026b\\u003e"}'
    assert go_json({"b": "<a&b>", "a": "é\u2028"}) == expected


async def test_raw_is_the_whole_kv2_response_data(build: Build) -> None:
    response = kv2({"password": SECRET})
    out = await build(kv_type="kv-v2", data=response)
    assert json.loads(out["_raw"]) == response
    assert out["_raw"] == go_json(response).encode()


async def test_raw_of_kv1_is_the_secret(build: Build) -> None:
    out = await build(kv_type="kv-v1", data={"password": SECRET, "n": 1})
    assert json.loads(out["_raw"]) == {"password": SECRET, "n": 1}
    assert out["password"] == SECRET.encode()
    assert out["n"] == b"1"


async def test_exclude_raw(build: Build) -> None:
    out = await build(kv_type="kv-v2", data=kv2({"a": "1"}),
                      transformation=transform(exclude_raw=True))
    assert dict(out) == {"a": b"1"}


async def test_source_key_named_raw_collides_unless_excluded(build: Build) -> None:
    with pytest.raises(RenderError) as info:
        await build(kv_type="kv-v2", data=kv2({"_raw": SECRET}))
    assert info.value.key == "_raw"
    assert "excludeRaw" in str(info.value) and SECRET not in str(info.value)
    out = await build(kv_type="kv-v2", data=kv2({"_raw": "x"}),
                      transformation=transform(exclude_raw=True))
    assert out["_raw"] == b"x"
    # Filtered away, it does not collide.
    out = await build(kv_type="kv-v2", data=kv2({"_raw": "x", "a": "1"}),
                      transformation=transform(excludes=("^_raw$",)))
    assert json.loads(out["_raw"])["data"]["_raw"] == "x"


async def test_template_named_raw_collides(build: Build) -> None:
    with pytest.raises(RenderError) as info:
        await build(kv_type="kv-v2", data=kv2({}),
                    transformation=transform(templates={"_raw": "x"}))
    assert info.value.key == "_raw"


async def test_deleted_version_keeps_last_data(build: Build) -> None:
    with pytest.raises(RenderError, match="deleted or destroyed"):
        await build(kv_type="kv-v2",
                    data={"data": None, "metadata": {**METADATA, "destroyed": True}})
    with pytest.raises(RenderError, match="kv-v1"):
        await build(kv_type="kv-v2", data={"data": "nope"})


# --- includes and excludes ----------------------------------------------------------------


async def test_excludes_then_includes_on_source_keys_only(build: Build) -> None:
    data = {"db_user": "u", "db_password": "p", "api_key": "k", "debug": "1"}
    out = await build(kv_type="kv-v2", data=kv2(data), transformation=transform(
        includes=("^db_",), excludes=("password",), templates={"dsn": "x", "db_tpl": "y"}))
    # db_password excluded; api_key, debug not included; templates and _raw always written.
    assert sorted(out) == ["_raw", "db_tpl", "db_user", "dsn"]


async def test_patterns_match_anywhere_as_gos_matchstring(build: Build) -> None:
    out = await build(kv_type="kv-v1", data={"xpasswordx": "1", "user": "2"},
                      transformation=transform(includes=("password",), exclude_raw=True))
    assert list(out) == ["xpasswordx"]


async def test_exclude_everything_keeps_templates(build: Build) -> None:
    out = await build(kv_type="kv-v2", data=kv2({"a": "1", "b": "2"}),
                      transformation=transform(excludes=(".*",), exclude_raw=True,
                                               templates={"c": "{{ secrets.a }}"}))
    assert dict(out) == {"c": b"1"}


async def test_template_wins_over_source_key(build: Build) -> None:
    out = await build(kv_type="kv-v2", data=kv2({"a": "vault"}),
                      transformation=transform(templates={"a": "template"}))
    assert out["a"] == b"template"


# --- templates ----------------------------------------------------------------------------


async def test_template_inputs(one: One) -> None:
    text = ("{{ secrets.password }}|{{ secrets['password'] }}|{{ metadata.version }}|"
            "{{ metadata.custom_metadata.owner }}|{{ labels.app }}|"
            "{{ annotations['example.com/x'] }}")
    out = await one(text, labels={"app": "web"}, annotations={"example.com/x": "y"})
    assert out == f"{SECRET}|{SECRET}|7|team-a|web|y"


async def test_kv1_has_empty_metadata(build: Build) -> None:
    out = await build(kv_type="kv-v1", data={"a": "1"},
                      transformation=transform(templates={"t": "{{ metadata | length }}"}))
    assert out["t"] == b"0"


async def test_filters_and_loops(one: One) -> None:
    assert await one("{{ secrets.password | b64encode }}") == "czNjcjN0LVZhbHVlLTdmMWM="
    assert await one("{{ 'czNjcjN0LVZhbHVlLTdmMWM=' | b64decode }}") == SECRET
    assert await one("{{ secrets | tojson }}", {"b": "<", "a": 1}) == '{"a":1,"b":"\\u003c"}'
    loop = "{% for k, v in secrets | dictsort %}{{ k }}={{ v }};{% endfor %}"
    assert await one(loop, {"b": "2", "a": "1"}) == "a=1;b=2;"


async def test_non_strings_print_as_json_and_newline_is_kept(one: One) -> None:
    out = await one("{{ secrets.t }} {{ secrets.n }} {{ secrets.o }} {{ secrets.i }}\n",
                    {"t": True, "n": None, "o": {"k": [1]}, "i": 3})
    assert out == 'true null {"k":[1]} 3\n'


async def test_dockerconfigjson_rewritten_from_vso(build: Build) -> None:
    # VSO's documented dockerconfigjson transformation (issue #619), in Jinja.
    text = (
        "{%- set ns = namespace(auths={}) -%}"
        "{%- for host, c in secrets.auths | dictsort -%}"
        "{%- set ns.auths = dict(ns.auths, **{host: {'username': c.username, "
        "'password': c.password, 'auth': (c.username ~ ':' ~ c.password) | b64encode}}) -%}"
        "{%- endfor -%}"
        "{{ {'auths': ns.auths} | tojson }}"
    )
    data = {"auths": {"host1": {"username": "bob", "password": "pass1"}}}
    out = await build(kv_type="kv-v2", data=kv2(data),
                      secret_type="kubernetes.io/dockerconfigjson",
                      transformation=transform(templates={".dockerconfigjson": text},
                                               excludes=(".*",), exclude_raw=True))
    assert json.loads(out[".dockerconfigjson"]) == {"auths": {"host1": {
        "auth": "Ym9iOnBhc3Mx", "password": "pass1", "username": "bob"}}}


async def test_missing_key_names_the_template_and_the_missing_name(one: One) -> None:
    with pytest.raises(RenderError) as info:
        await one("{{ secrets.passwrd }}")
    assert info.value.key == "out"
    assert "passwrd" in str(info.value)
    assert str(info.value).startswith("key 'out': template failed")
    assert SECRET not in str(info.value)


def test_syntax_error_names_the_key_and_line() -> None:
    with pytest.raises(RenderError) as info:
        compile_template(key="cfg", text=JINJA + "a\n{{ secrets.x }")
    assert info.value.key == "cfg"
    assert "line 3" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ secrets.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ secrets.update({'password': 'x'}) }}",
        "{{ secrets.password.__class__.__base__ }}",
    ],
)
async def test_sandbox_refuses_escapes(one: One, text: str) -> None:
    with pytest.raises(RenderError) as info:
        await one(text)
    assert info.value.key == "out"
    assert "unsafe" in str(info.value) or "undefined" in str(info.value).lower() \
        or "attribute" in str(info.value)
    assert SECRET not in str(info.value)


# --- never a secret value in an error -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ secrets[secrets.password] }}",      # the value becomes a name in the message
        "{{ secrets.password.format() }}",      # KeyError from the value's own braces
        "{{ secrets.password | int(base=2) + secrets.password }}",
        "{{ secrets.password + 1 }}",
        "{{ secrets.password | b64decode }}",
        "{{ secrets.password.encode('ascii') }}",
        "{{ secrets[secrets.password[:5]] }}",  # part of the value as a name
        "{{ secrets.password[100] }}",
        "{{ 1 / 0 }}{{ secrets.password }}",
    ],
)
async def test_template_errors_never_echo_values(one: One, text: str) -> None:
    data = {"password": "ab{cd}é" + SECRET}
    with pytest.raises(RenderError) as info:
        await one(text, data)
    shown = f"{info.value} {info.value!r} {info.value.args}"
    assert SECRET not in shown
    assert SECRET[:5] not in shown
    assert "{cd}" not in shown
    assert info.value.key == "out"


def _disguises(value: str) -> set[str]:
    """``value`` and the forms a template can turn it into (issue 10: upper, reverse, base64)."""
    b64 = base64.b64encode(value.encode()).decode()
    return {value, value.upper(), value.lower(), value[::-1], value.upper()[::-1], b64,
            b64.rstrip("="), value.swapcase(), value.title()}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("{{ secrets[secrets.password | upper] }}",
         "undefined: a name computed from the data (not shown) (line 2)"),
        ("x\n{{ secrets[secrets.password | reverse] }}",
         "undefined: a name computed from the data (not shown) (line 3)"),
        ("\n\n{{ secrets[secrets.password | b64encode] }}",
         "undefined: a name computed from the data (not shown) (line 4)"),
        ("{{ secrets.password | title | attr(secrets.password) }}",
         "undefined: a name computed from the data (not shown) (line 2)"),
        ("{{ {}[secrets.password | lower] }}",
         "undefined: a name computed from the data (not shown) (line 2)"),
        ("{{ secrets.password | upper | int(base=2) / 0 }}", "division by zero (line 2)"),
        ("{{ (secrets.password | upper).__class__ }}",
         "unsafe access refused by the sandbox: '__class__' (line 2)"),
        ("{{ (secrets.password | reverse) + 1 }}",
         "an operation on a value of the wrong type (line 2)"),
        ("{{ (secrets.password | upper).format(secrets) }}",
         "a key or index that does not exist (line 2)"),
        ("{{ (secrets.password | b64encode | b64decode).encode('ascii') }}",
         "text that cannot be encoded or decoded (line 2)"),
    ],
)
async def test_errors_are_a_kind_and_a_line_never_a_disguised_value(
    one: One, text: str, kind: str
) -> None:
    # Built, not filtered: the message is exactly the kind and the line, whatever the value.
    value = "ab{cd}é" + SECRET
    with pytest.raises(RenderError) as info:
        await one(text, {"password": value})
    assert str(info.value) == f"key 'out': template failed: {kind}"
    shown = f"{info.value} {info.value!r} {info.value.args} {info.value.__context__!r}"
    assert not [form for form in _disguises(value) if form in shown]
    assert not [form for form in _disguises(SECRET) if form in shown]


async def test_a_literal_name_is_named_a_computed_one_is_not(one: One) -> None:
    with pytest.raises(RenderError) as info:
        await one("{{ secrets.user }}")
    assert str(info.value) == "key 'out': template failed: undefined: 'user' (line 2)"
    # Computed from literals only, it is still the template's text.
    with pytest.raises(RenderError) as info:
        await one("\n{{ secrets['pass' ~ 'word2'] }}")
    assert str(info.value) == "key 'out': template failed: undefined: 'password2' (line 3)"
    with pytest.raises(RenderError) as info:
        await one("{{ secrets['pass' ~ secrets.password] }}")
    assert "(not shown)" in str(info.value) and "pass" + SECRET not in str(info.value)


def test_compiling_computes_nothing() -> None:
    # Templates are compiled in syncd's process when the spec is read: Jinja must not compute
    # a filter of constants then (it once made this a 100 MB constant in syncd).
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    for text in ("{{ 'x' | center(100000000) }}", "{{ '%999999999d' % 1 }}",
                 "{{ 'ab' | wordwrap(100000000) | center(90000000) }}"):
        compile_template(key="k", text=JINJA + text)
    assert time.monotonic() - started < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20 * 1024  # KiB


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x" * (MAX_TEMPLATE_LENGTH + 1), f"at most {MAX_TEMPLATE_LENGTH} are accepted"),
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
        ("{% if 1 %}" * 400 + "{% endif %}" * 400, "nested too deeply"),
        ("{% for a in b %}" * 30 + "{% endfor %}" * 30, "nested too deeply"),  # Python's limit
    ],
)
def test_templates_too_large_to_compile_are_refused(text: str, problem: str) -> None:
    with pytest.raises(RenderError) as info:
        compile_template(key="big", text=JINJA + text)
    assert info.value.key == "big" and problem in str(info.value)


async def test_renderings_never_expose_values(build: Build) -> None:
    out = await build(kv_type="kv-v2", data=kv2({"password": SECRET}))
    assert isinstance(out, SecretData)
    assert SECRET not in repr(out) and SECRET not in str(out)
    assert "password" in repr(out)
    template = compile_template(key="k", text=JINJA + f"literal {SECRET}")
    assert SECRET not in repr(template)
    assert SECRET not in repr(Transformation(templates={"k": template}))


# --- keys, size and types -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["bad key", "a/b", "ü", ".", "..", "..x", "x" * 254, ""])
async def test_invalid_keys_named(build: Build, key: str) -> None:
    assert key_problem(key)
    with pytest.raises(RenderError) as info:
        await build(kv_type="kv-v1", data={key: SECRET}, transformation=transform(exclude_raw=True))
    assert info.value.key == key
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("key", ["a", "A-b_c.d", ".dockerconfigjson", "x" * 253, "1", "a..b"])
def test_valid_keys(key: str) -> None:
    assert key_problem(key) is None


async def test_invalid_key_can_be_filtered_away(build: Build) -> None:
    out = await build(kv_type="kv-v1", data={"bad key": "1", "ok": "2"},
                      transformation=transform(excludes=(" ",), exclude_raw=True))
    assert dict(out) == {"ok": b"2"}


async def test_size_limit_counts_values_only_as_kubernetes_does(build: Build) -> None:
    exactly = {"a": "x" * (MAX_SECRET_SIZE - 1), "long-key-not-counted" * 10: "y"}
    out = await build(kv_type="kv-v1", data=exactly, transformation=transform(exclude_raw=True))
    assert out.size == MAX_SECRET_SIZE
    with pytest.raises(RenderError) as info:
        await build(kv_type="kv-v1", data={"a": "x" * MAX_SECRET_SIZE, "b": "y"},
                    transformation=transform(exclude_raw=True))
    assert info.value.key == "a"
    assert "1048577 bytes" in str(info.value) and "excludeRaw" in str(info.value)


async def test_raw_counts_toward_the_size(build: Build) -> None:
    with pytest.raises(RenderError) as info:
        await build(kv_type="kv-v2", data=kv2({"a": "x" * (MAX_SECRET_SIZE // 2 + 10)}))
    assert info.value.key == "_raw"


@pytest.mark.parametrize(
    ("secret_type", "data", "key"),
    [
        ("kubernetes.io/tls", {"tls.crt": "c"}, "tls.key"),
        ("kubernetes.io/dockerconfigjson", {"x": "y"}, ".dockerconfigjson"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "{not json"}, ".dockerconfigjson"),
        ("kubernetes.io/ssh-auth", {}, "ssh-privatekey"),
        ("kubernetes.io/basic-auth", {"user": "x"}, "username"),
    ],
)
async def test_typed_secrets_need_their_keys(
    build: Build, secret_type: str, data: dict[str, str], key: str
) -> None:
    with pytest.raises(RenderError) as info:
        await build(kv_type="kv-v1", data=data, secret_type=secret_type,
                    transformation=transform(exclude_raw=True))
    assert info.value.key == key
    assert secret_type in str(info.value)


async def test_typed_secrets_pass_with_their_keys(build: Build) -> None:
    await build(kv_type="kv-v1", data={"tls.crt": "c", "tls.key": "k"},
                secret_type="kubernetes.io/tls")
    await build(kv_type="kv-v1", data={"password": "p"}, secret_type="kubernetes.io/basic-auth")
    await build(kv_type="kv-v1", data={"anything": "x"}, secret_type="example.com/custom")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ 'x' * 10**10 }}",
         "a repetition larger than the 1 MiB Secret limit is refused (line 2)"),
        ("{{ [1] * 2000000 }}",
         "a repetition larger than the 1 MiB Secret limit is refused (line 2)"),
        ("{{ 10 ** 100000000 }}", "an exponent above 64 is refused (line 2)"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}0123456789"
         "{% endfor %}{% endfor %}", "the output is larger than the 1 MiB Secret limit"),
    ],
)
async def test_templates_cannot_exhaust_memory(one: One, text: str, message: str) -> None:
    with pytest.raises(RenderError) as info:
        await one(text)
    assert str(info.value) == f"key 'out': template failed: {message}"


async def test_small_repetitions_and_powers_work(one: One) -> None:
    out = await one("{{ 3 * 'ab' }}{{ 'c' * 2 }}{{ 2 ** 10 }}{{ [0] * 2 }}")
    assert out == "abababcc1024[0,0]"
