"""No secret value in any error, chained error, traceback or repr of these modules."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncd.fingerprint import fingerprint
from syncd.rendering import MAX_SECRET_SIZE, Transformation, compile_template, render
from syncd.specs import parse_vault_static_secret

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


def render_with(text: str, **data: Any) -> None:
    render(kv_type="kv-v2",
           data={"data": {"password": f"{{x}}{SECRET}", **data}, "metadata": {}},
           transformation=Transformation(templates={"t": compile_template(key="t", text=text)}))


FAILURES: list[Callable[[], Any]] = [
    lambda: render_with("{{ secrets[secrets.password] }}"),
    lambda: render_with("{{ secrets.password.format() }}"),
    lambda: render_with("{{ secrets.password | b64decode }}"),
    lambda: render_with("{{ secrets.b | b64decode }}", b="/w=="),  # valid base64, not UTF-8
    lambda: render_with("{{ secrets.password.encode('ascii') }}", password=f"é{SECRET}"),
    lambda: render_with("{{ secrets.password | int + secrets.password }}"),
    lambda: render_with("{{ secrets.password.__class__ }}"),
    lambda: render_with("{{ secrets.password.nope }}"),
    lambda: render_with("{{ secrets[secrets.password[4:16]] }}"),
    lambda: render_with("{{ {secrets.password: 1}[secrets.password * 2] }}"),
    lambda: render(kv_type="kv-v1", data={"bad key": SECRET}),
    lambda: render(kv_type="kv-v1", data={"_raw": SECRET}),
    lambda: render(kv_type="kv-v1", data={"k": SECRET * (MAX_SECRET_SIZE // len(SECRET))}),
    lambda: render(kv_type="kv-v1", data={".dockerconfigjson": "{" + SECRET},
                   secret_type="kubernetes.io/dockerconfigjson"),
    lambda: render(kv_type="kv-v1", data={"tls.crt": SECRET}, secret_type="kubernetes.io/tls"),
    lambda: fingerprint(key=b"k" * 32, data={"a": SECRET}),  # type: ignore[dict-item]
]


@pytest.mark.parametrize("index", range(len(FAILURES)))
def test_errors_carry_no_secret(index: int) -> None:
    with pytest.raises(Exception) as info:
        FAILURES[index]()
    assert_clean(info.value)


def test_reprs_carry_no_secret() -> None:
    data = render(kv_type="kv-v2", data={"data": {"password": SECRET}, "metadata": {}})
    template = compile_template(key="t", text=f"pasted {SECRET}")
    obj = {
        "kind": "VaultStaticSecret", "metadata": {"name": "web", "namespace": "app"},
        "spec": {"type": "kv-v2", "mount": "kv", "path": "p", "destination": {
            "name": "s", "transformation": {"templates": {"t": {"text": f"pasted {SECRET}"}}}}},
    }
    spec = parse_vault_static_secret(obj)
    for shown in (repr(data), str(data), repr(template), repr(spec), str(spec)):
        assert SECRET not in shown
    assert re.search(r"SecretData\(keys=\['_raw', 'password'\], size=\d+\)", repr(data))
