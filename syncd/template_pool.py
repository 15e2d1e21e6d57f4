"""Templates rendered in worker processes: a deadline, a memory bound, no tenant waits on another.

Why processes: a template is code from a namespace user, and Python cannot stop a thread, or
bound the memory of one computation. A process can be killed at its deadline, and its address
space limited (see :mod:`syncd.template_worker`). Why a small pool and not one worker: while a
hostile template burns its deadline in one worker, the other namespaces render in the next.

No tenant (namespace) renders in more than all workers but one at a time, so however many
expensive templates one namespace has, the others find a worker.

What it costs: about 11 MiB of memory of its own per worker that has been used (21 MiB RSS, of
which 10 are the Python binary's and libraries' pages, shared with syncd); workers start on
first use, and the most recently used is preferred, so a second one starts only when two
renders overlap. A killed worker is replaced at the next render (about 60 ms).

Every render of one VaultStaticSecret has one deadline for all its templates; each template is
one request, so an error names its template. A render over its deadline, over its memory, or
whose worker died, is :class:`~syncd.rendering.TemplateTooExpensive`; the controller reports it
and backs off. A worker is killed whenever a request did not finish cleanly (deadline, error,
cancellation): a half-answered worker is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from syncd.rendering import (
    RenderError,
    SecretTemplate,
    SourceTemplate,
    TemplateTooExpensive,
    TemplateWorkerError,
)
from syncd.template_worker import HEADER, decode_frame, encode_frame
from syncd.templating import MAX_SECRET_SIZE, Failure

MIB = 1024 * 1024
#: A reply holds at most 1 MiB of output; JSON may escape a character into six.
_MAX_REPLY = 6 * MAX_SECRET_SIZE + 4096
#: How long a worker may take to start (a Raspberry Pi imports jinja2 in about a second).
_START_TIMEOUT = 15.0
# The worker needs nothing of syncd's environment (tokens, kubeconfig paths...): only what
# finds Python and its packages.
_ENV_KEEP = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL")


class _Worker:
    """One worker process, started on demand and replaced after anything unclean."""

    def __init__(self, *, memory: int) -> None:
        self._memory = memory
        self.process: asyncio.subprocess.Process | None = None
        #: Killed, not yet reaped.
        self._dying: list[asyncio.subprocess.Process] = []

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        await self.kill()  # reap what a cancelled render left
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
        # -I: neither the working directory nor PYTHON* variables decide what is imported.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "syncd.template_worker", "--memory", str(self._memory),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        self.process = process
        try:
            ready = await asyncio.wait_for(self._read(), _START_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError):
            ready = None
        except BaseException:  # cancelled: its ready frame would be read as a reply
            self.kill_now()
            raise
        if ready != {"ready": True}:
            await self.kill()
            raise TemplateWorkerError(
                f"the template worker did not start (exit status {process.returncode}); its "
                "error, if any, is on syncd's stderr")

    async def ask(self, message: Mapping[str, Any]) -> Any:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(encode_frame(message))
        await self.process.stdin.drain()
        return await self._read()

    async def _read(self) -> Any:
        assert self.process is not None and self.process.stdout is not None
        (length,) = HEADER.unpack(await self.process.stdout.readexactly(HEADER.size))
        if length > _MAX_REPLY:
            raise ValueError("reply too large")
        return decode_frame(await self.process.stdout.readexactly(length))

    def kill_now(self) -> None:
        """Kill at once (also from a cancelled task); the next :meth:`start` or :meth:`kill`
        reaps it."""
        process, self.process = self.process, None
        if process is not None:
            self._dying.append(process)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    async def kill(self) -> None:
        self.kill_now()
        dying, self._dying = self._dying, []
        for process in dying:
            await process.wait()

    async def stop(self, *, grace: float = 1.0) -> None:
        """End the worker: its stdin closed, it exits; killed if it does not in ``grace``."""
        process = self.process
        if process is not None and process.returncode is None and process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace)
        await self.kill()


class _Turns:
    """How many renders of one tenant may run at once, and how many want to."""

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class TemplatePool:
    """Renders templates in up to ``workers`` processes, each render within ``deadline`` s
    and ``memory`` bytes (of address space beyond an idle worker's)."""

    def __init__(self, *, workers: int = 2, deadline: float = 1.0, memory: int = 24 * MIB) -> None:
        self.deadline = deadline
        self._all = [_Worker(memory=memory) for _ in range(workers)]
        self._free = list(self._all)
        self._slots = asyncio.Semaphore(workers)
        #: One tenant (namespace) renders in at most all workers but one: however many
        #: expensive templates it has, the other tenants find a worker.
        self._per_tenant = max(1, workers - 1)
        self._tenants: dict[str, _Turns] = {}
        self._closed = False

    def pids(self) -> list[int]:
        """The running workers' process ids."""
        return [w.process.pid for w in self._all if w.alive and w.process is not None]

    async def render(
        self, *, templates: Sequence[SecretTemplate], context: Mapping[str, Any],
        tenant: str = "", sources: Sequence[SourceTemplate] = (),
    ) -> dict[str, bytes]:
        """The output of each template, by key. Raises :class:`RenderError` naming the key
        (and the source template, when the failure is in one of its definitions).

        ``sources`` join the set the templates are rendered in, unrendered. ``tenant`` (the
        namespace) shares its workers with no one else's renders: see ``_per_tenant``.
        """
        if not templates:
            return {}
        if self._closed:
            raise TemplateWorkerError("syncd is stopping: templates are no longer rendered")
        turns = self._tenants.get(tenant)
        if turns is None:
            turns = self._tenants[tenant] = _Turns(self._per_tenant)
        turns.users += 1
        try:
            async with turns.semaphore, self._slots:
                # The most recently used worker that is running: the others may never start.
                worker = max(self._free, key=lambda w: w.alive)
                self._free.remove(worker)
                try:
                    return await self._render(worker, templates, sources, context)
                finally:
                    self._free.append(worker)
        finally:
            turns.users -= 1
            if not turns.users:
                del self._tenants[tenant]

    async def _render(
        self, worker: _Worker, templates: Sequence[SecretTemplate],
        sources: Sequence[SourceTemplate], context: Mapping[str, Any],
    ) -> dict[str, bytes]:
        if not worker.alive:
            await worker.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline
        # One set per resource, as VSO parses it: the source templates, then the templates
        # (whose definitions win over theirs).
        siblings = {s.name: s.text for s in sources} | {t.set_name: t.text for t in templates}
        origins = {s.name: s.origin for s in sources}
        out: dict[str, bytes] = {}
        for template in templates:
            problem = None
            clean = False
            try:
                async with asyncio.timeout_at(deadline):
                    reply = await worker.ask({
                        "text": template.text, "context": context, "name": template.set_name,
                        "siblings": siblings})
                output = reply.get("output")
                # The bytes as the template made them (see the worker's protocol).
                data = output.encode("utf-8", "surrogateescape") \
                    if isinstance(output, str) else None
                clean = True
            except TimeoutError:
                problem = (f"rendering took longer than {self.deadline:g} s "
                           "(--template-deadline); the render was stopped")
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                problem = "the template worker ended while rendering; the render was stopped"
            finally:
                if not clean:  # also when cancelled: never reuse a half-answered worker
                    worker.kill_now()
            if problem is not None:
                await worker.kill()
                raise TemplateTooExpensive(problem, key=template.key)
            if reply.get("failure") is not None:
                failure = Failure(**reply["failure"])
                message = "template failed: " + failure.describe(
                    template=origins.get(failure.template or ""))
                if failure.expensive:
                    await worker.kill()  # its heap may stay large: start afresh
                    raise TemplateTooExpensive(message, key=template.key)
                raise RenderError(message, key=template.key)
            if data is None:
                await worker.kill()
                raise TemplateTooExpensive("the template worker answered nothing usable; the "
                                           "render was stopped", key=template.key)
            out[template.key] = data
        return out

    async def close(self) -> None:
        """Stop every worker (renders still running are stopped with them)."""
        self._closed = True
        await asyncio.gather(*(w.stop() for w in self._all))
