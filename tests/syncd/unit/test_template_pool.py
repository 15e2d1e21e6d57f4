"""The template workers: a deadline, a memory bound, no render waits on a hostile one, and a
worker that is small (it imports jinja2, not syncd's clients)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncd import gojson
from syncd.rendering import RenderError, TemplateTooExpensive, compile_template
from syncd.template_pool import MIB, TemplatePool
from syncd.templating import JINJA2_MARKER

#: These tests are of the Jinja2 path: Go templates are the default (see test_gotemplate*).
JINJA = JINJA2_MARKER + "\n"

SECRET = "s3cr3t-Value-of-the-pool-tests"
CONTEXT: dict[str, Any] = {"secrets": {"password": SECRET}, "metadata": {}, "labels": {},
                           "annotations": {}}
SPIN = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")


@pytest.fixture
async def pool() -> AsyncIterator[TemplatePool]:
    templates = TemplatePool(workers=2, deadline=0.5, memory=32 * MIB)
    yield templates
    await templates.close()
    assert templates.pids() == []


async def render(pool: TemplatePool, text: str, key: str = "k",
                 tenant: str = "app") -> dict[str, bytes]:
    return await pool.render(templates=[compile_template(key=key, text=JINJA + text)],
                             context=CONTEXT, tenant=tenant)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _address_space_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits", encoding="ascii") as limits:
        line = next(line for line in limits if line.startswith("Max address space"))
    return int(line.split()[3])


async def test_a_worker_starts_on_first_use_and_stays(pool: TemplatePool) -> None:
    assert pool.pids() == []
    assert await render(pool, "{{ secrets.password }}") == {"k": SECRET.encode()}
    [pid] = pool.pids()
    assert await render(pool, "{{ secrets.password | upper }}") == {"k": SECRET.upper().encode()}
    assert pool.pids() == [pid]  # reused: a second worker starts only when renders overlap


async def test_a_template_over_its_deadline_is_killed(pool: TemplatePool) -> None:
    await render(pool, "warm")
    [pid] = pool.pids()
    started = time.monotonic()
    with pytest.raises(TemplateTooExpensive) as info:
        await render(pool, SPIN, key="spin")
    assert 0.5 <= time.monotonic() - started < 1.5
    assert info.value.key == "spin" and info.value.reason == "TemplateTooExpensive"
    assert "longer than 0.5 s" in str(info.value)
    assert pid not in pool.pids()
    # The next render gets a new worker.
    assert await render(pool, "{{ 1 + 1 }}") == {"k": b"2"}


@pytest.mark.parametrize("text", [
    "{{ 'x' | center(100000000) }}",
    "{{ 'x' | center(20000000) | wordwrap(5) }}",
    "{{ '%100000000d' % 1 }}",
    "{{ range(100000) | list | map('string') | join(',') | center(40000000) }}",
])
async def test_a_template_over_its_memory_fails_fast_and_the_worker_stays_small(
    pool: TemplatePool, text: str
) -> None:
    await render(pool, "warm")
    [pid] = pool.pids()
    idle_kib = _rss_kib(pid)
    # The kernel holds the worker to its idle size plus the budget.
    assert _address_space_limit(pid) < idle_kib * 1024 + 64 * MIB
    started = time.monotonic()
    with pytest.raises(TemplateTooExpensive) as info:
        await render(pool, text)
    assert time.monotonic() - started < 0.5  # MemoryError, not the deadline
    assert str(info.value) == ("key 'k': template failed: the template needed more memory than "
                               "allowed (line 2)")
    assert pool.pids() == []  # its heap may stay large: a new one next time


async def test_a_hostile_render_does_not_hold_up_the_others() -> None:
    # Judged by order, not by a clock: the others are all answered while the hostile render
    # is still running (its deadline is long enough for a loaded machine).
    pool = TemplatePool(workers=2, deadline=2.0, memory=32 * MIB)
    try:
        hostile = asyncio.create_task(render(pool, SPIN, tenant="hostile"))
        await asyncio.sleep(0)  # the hostile render takes the first worker
        for _ in range(5):
            assert await render(pool, "{{ secrets.password }}") == {"k": SECRET.encode()}
        assert not hostile.done()
        with pytest.raises(TemplateTooExpensive):
            await hostile
    finally:
        await pool.close()


async def test_a_tenant_with_many_hostile_templates_holds_one_worker() -> None:
    pool = TemplatePool(workers=2, deadline=2.0)
    try:
        hostile = [asyncio.create_task(pool.render(
            templates=[compile_template(key=f"spin{i}", text=JINJA + SPIN)], context=CONTEXT,
            tenant="a")) for i in range(3)]
        await asyncio.sleep(0)  # a's renders are queued first
        for _ in range(3):
            out = await pool.render(templates=[compile_template(key="k", text=JINJA + "{{ 1 }}")],
                                    context=CONTEXT, tenant="b")
            assert out == {"k": b"1"}
        # b was never behind a's renders: none of them has ended yet.
        assert not any(task.done() for task in hostile)
        results = await asyncio.gather(*hostile, return_exceptions=True)
        assert all(isinstance(r, TemplateTooExpensive) for r in results)
    finally:
        await pool.close()


@pytest.mark.parametrize("delay", [0.01, 0.3])  # while the worker starts; while it renders
async def test_a_cancelled_render_leaves_no_half_answered_worker(delay: float) -> None:
    pool = TemplatePool(workers=1, deadline=5.0)
    try:
        task = asyncio.create_task(render(pool, SPIN))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.pids() == []
        assert await render(pool, "{{ 'next' }}") == {"k": b"next"}
    finally:
        await pool.close()


async def test_one_deadline_for_all_templates_of_a_render(pool: TemplatePool) -> None:
    slow = "{% for i in range(100000) %}{% for j in range(12) %}{% endfor %}{% endfor %}"
    # The deadline is set from one template's cost measured now (a loaded machine is slower):
    # each template alone fits ten times over, forty of them do not.
    pool.deadline = 30.0
    alone = [compile_template(key="alone", text=JINJA + slow)]
    await pool.render(templates=alone, context=CONTEXT)  # the worker started: not measured
    started = time.monotonic()
    await pool.render(templates=alone, context=CONTEXT)
    pool.deadline = max(10 * (time.monotonic() - started), 0.2)
    templates = [compile_template(key=f"t{i}", text=JINJA + slow) for i in range(40)]
    with pytest.raises(TemplateTooExpensive) as info:
        await pool.render(templates=templates, context=CONTEXT)
    assert info.value.key is not None and info.value.key != "t0"


async def test_errors_come_back_as_render_errors(pool: TemplatePool) -> None:
    with pytest.raises(RenderError) as info:
        await render(pool, "{{ secrets[secrets.password | upper] }}", key="lookup")
    assert type(info.value) is RenderError and info.value.key == "lookup"
    assert SECRET.upper() not in str(info.value)
    [pid] = pool.pids()
    assert await render(pool, "ok") == {"k": b"ok"}
    assert pool.pids() == [pid]  # an ordinary error keeps the worker


def test_the_worker_imports_only_what_rendering_needs() -> None:
    probe = ("import sys, syncd.template_worker; "
             "print('\\n'.join(sorted(sys.modules)))")
    modules = set(subprocess.run([sys.executable, "-I", "-c", probe], check=True,
                                 capture_output=True, text=True).stdout.split())
    assert "jinja2" in modules
    heavy = {"structlog", "opentelemetry", "hvac", "aiohttp", "kubernetes_asyncio", "plumbing",
             "requests", "asyncio", "yaml", "syncd.rendering", "syncd.controller"}
    assert not {m.split(".")[0] for m in modules} & heavy - {"syncd"}
    assert not modules & heavy


def test_a_worker_ends_with_syncd_even_mid_template(tmp_path: Path) -> None:
    # syncd killed (SIGKILL: no clean-up) while a worker spins on a hostile template.
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio\n"
        "from syncd.rendering import compile_template\n"
        "from syncd.template_pool import TemplatePool\n"
        "async def main():\n"
        "    pool = TemplatePool(workers=1, deadline=60)\n"
        "    await pool.render(templates=[compile_template(key='k', text='warm')],\n"
        "                      context={})\n"
        "    print(pool.pids()[0], flush=True)\n"
        "    await pool.render(templates=[compile_template(\n"
        f"        key='k', text={JINJA + SPIN!r})], context={{}})\n"
        "asyncio.run(main())\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        # Spinning: a fifth of a second of CPU time spent on the template.
        spent = _cpu_ticks(worker)
        deadline = time.monotonic() + 5
        while _cpu_ticks(worker) < spent + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cpu_ticks(worker) >= spent + 20
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has ended (init reaps it)
    except OSError:
        return False


async def test_the_worker_carries_any_bytes_and_numbers_as_vault_wrote_them(
        pool: TemplatePool) -> None:
    """A Go string is bytes (b64dec of ff fe fd), and a number keeps its text across the
    worker's frames (JSON would make 1e21 1e+21 and -0 0)."""
    context = {**CONTEXT, "secrets": gojson.loads(
        '{"blob":"//79","n":1e21,"z":-0,"f":1.50,"b":12345678901234567890}')}
    texts = {"go": "{{ .Secrets.blob | b64dec }}|{{ .Secrets.n }} {{ .Secrets.z }} "
                   "{{ .Secrets.f }} {{ .Secrets.b | toJson }}",
             "jinja": JINJA + "{{ secrets.blob | b64decode }}|{{ secrets.n }} {{ secrets.z }} "
                              "{{ secrets.f }} {{ secrets.b | tojson }}"}
    out = await pool.render(
        templates=[compile_template(key=key, text=text) for key, text in texts.items()],
        context=context, tenant="app")
    expected = b"\xff\xfe\xfd|1e21 -0 1.50 12345678901234567890"
    assert out == {"go": expected, "jinja": expected}
