"""No secret value in any error, chained error, traceback or repr of these modules."""

from __future__ import annotations

import inspect
import re
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from syncd.fingerprint import fingerprint
from syncd.rendering import MAX_SECRET_SIZE, Transformation, compile_template, render
from syncd.specs import parse_vault_static_secret
from syncd.template_pool import TemplatePool
from syncd.templating import JINJA2_MARKER

#: These tests are of the Jinja2 path: Go templates are the default (see test_gotemplate*).
JINJA = JINJA2_MARKER + "\n"

SECRET = "Zq9-s3cr3t-Value-7f1c"
# Pieces an error could carry without the whole value.
PIECES = (SECRET, SECRET[:8], SECRET[-8:], "7f1c}")


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def assert_clean(exc: BaseException) -> None:
    shown = "".join(traceback.format_exception(exc))
    for link in chain(exc):
        shown += f"{link}|{link!r}|{link.args!r}|{vars(link)!r}"
    for piece in PIECES:
        assert piece not in shown, f"{piece!r} leaked in {shown}"


async def render_with(pool: TemplatePool, text: str, **data: Any) -> None:
    await render(
        templates=pool, kv_type="kv-v2",
        data={"data": {"password": f"{{x}}{SECRET}", **data}, "metadata": {}},
        transformation=Transformation(
            templates={"t": compile_template(key="t", text=JINJA + text)}))


@pytest.fixture
async def pool() -> AsyncIterator[TemplatePool]:
    templates = TemplatePool(workers=1)
    yield templates
    await templates.close()


FAILURES: list[Callable[[TemplatePool], Any]] = [
    lambda p: render_with(p, "{{ secrets[secrets.password] }}"),
    lambda p: render_with(p, "{{ secrets.password.format() }}"),
    lambda p: render_with(p, "{{ secrets.password | b64decode }}"),
    lambda p: render_with(p, "{{ secrets.password.encode('ascii') }}", password=f"é{SECRET}"),
    lambda p: render_with(p, "{{ secrets.password | int + secrets.password }}"),
    lambda p: render_with(p, "{{ secrets.password.__class__ }}"),
    lambda p: render_with(p, "{{ secrets.password.nope }}"),
    lambda p: render_with(p, "{{ secrets[secrets.password[4:16]] }}"),
    lambda p: render_with(p, "{{ {secrets.password: 1}[secrets.password * 2] }}"),
    lambda p: render(templates=p, kv_type="kv-v1", data={"bad key": SECRET}),
    lambda p: render(templates=p, kv_type="kv-v1", data={"_raw": SECRET}),
    lambda p: render(templates=p, kv_type="kv-v1",
                     data={"k": SECRET * (MAX_SECRET_SIZE // len(SECRET))}),
    lambda p: render(templates=p, kv_type="kv-v1", data={".dockerconfigjson": "{" + SECRET},
                     secret_type="kubernetes.io/dockerconfigjson"),
    lambda p: render(templates=p, kv_type="kv-v1", data={"tls.crt": SECRET},
                     secret_type="kubernetes.io/tls"),
    lambda p: fingerprint(key=b"k" * 32, data={"a": SECRET}),  # type: ignore[dict-item]
]


@pytest.mark.parametrize("index", range(len(FAILURES)))
async def test_errors_carry_no_secret(index: int, pool: TemplatePool) -> None:
    with pytest.raises(Exception) as info:
        result = FAILURES[index](pool)
        if inspect.isawaitable(result):
            await result
    assert_clean(info.value)


async def test_reprs_carry_no_secret(pool: TemplatePool) -> None:
    data = await render(templates=pool, kv_type="kv-v2",
                        data={"data": {"password": SECRET}, "metadata": {}})
    template = compile_template(key="t", text=JINJA + f"pasted {SECRET}")
    obj = {
        "kind": "VaultStaticSecret", "metadata": {"name": "web", "namespace": "app"},
        "spec": {"type": "kv-v2", "mount": "kv", "path": "p", "destination": {
            "name": "s", "transformation": {"templates": {"t": {"text": f"pasted {SECRET}"}}}}},
    }
    spec = parse_vault_static_secret(obj)
    for shown in (repr(data), str(data), repr(template), repr(spec), str(spec)):
        assert SECRET not in shown
    assert re.search(r"SecretData\(keys=\['_raw', 'password'\], size=\d+\)", repr(data))
