"""The template worker: ``python -m syncd.template_worker``, a small process that runs templates.

A template is code a namespace user wrote. Run on syncd's event loop, a nested loop stopped
the health probe, the Lease renewals and every other namespace; ``'x'|center(10**8)`` took
syncd past its memory limit. Here, a template runs in a process of its own, which syncd kills
when the render's deadline passes (:mod:`syncd.template_pool`), and whose address space is
limited (``RLIMIT_AS``) so that a large allocation fails with ``MemoryError`` instead of
growing the pod.

The process imports jinja2, :mod:`syncd.templating` and :mod:`syncd.gotemplate` (pure Python)
only, none of syncd's clients: it is about 10 MiB of memory of its own (the Python binary's
pages are shared with syncd).

The protocol, on stdin and stdout: frames of a 4-byte big-endian length and that many bytes of
JSON (:func:`encode_frame`). Two things plain JSON would lose are kept: Vault's numbers as Vault
wrote them (``1.0``, ``1e21``: :mod:`syncd.gojson`), and an output's bytes that are not UTF-8
(a Go template's ``b64dec`` makes any bytes), carried as surrogateescape does in the string and
written with ``surrogatepass``. The worker first writes ``{"ready": true}``; then, for each request
``{"text": ..., "context": {...}, "name": ..., "siblings": {name: text}}`` (the last two
for Go templates, optional), it writes ``{"output": "..."}`` or
``{"failure": {"kind": ..., "line": ..., "expensive": ..., "template": ...}}``. After the ready
frame its stderr is /dev/null: nothing a template does can reach syncd's logs.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import struct
import sys
from typing import Any, BinaryIO

from syncd import gojson
from syncd.gotemplate.values import go_bytes, go_string
from syncd.templating import TemplateFailed, render_template

HEADER = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> Any | None:
    """The next message, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return decode_frame(body)


def decode_frame(body: bytes) -> Any:
    """A frame's message; ``ValueError`` if it is not one."""
    return gojson.loads(body.decode("utf-8", "surrogatepass"))


def encode_frame(message: Any) -> bytes:
    body = gojson.encode(message).encode("utf-8", "surrogatepass")
    return HEADER.pack(len(body)) + body


def _limit_address_space(budget: int) -> None:
    """Allow ``budget`` bytes of address space beyond what the process uses now (idle)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            size = next(int(line.split()[1]) * 1024 for line in status
                        if line.startswith("VmSize:"))
    except (OSError, StopIteration):  # not Linux: no /proc, and RLIMIT_AS is not enforced
        return
    resource.setrlimit(resource.RLIMIT_AS, (size + budget, size + budget))


def _end_with_parent() -> None:
    """Exit when syncd does, even in the middle of a template (which reads no stdin).

    In a pod syncd is PID 1 and its end ends the worker; elsewhere, a syncd that was killed
    would leave a worker spinning on a hostile template. A timer signal, not a thread: Python
    runs the handler between two bytecodes of the template, and a thread would reserve a malloc
    arena (64 MiB of address space).
    """
    parent = os.getppid()

    def check(signum: int, frame: object) -> None:
        if os.getppid() != parent:
            os._exit(1)

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, 0.5, 0.5)


def _handle(request: Any) -> dict[str, Any]:
    try:
        siblings = request.get("siblings")
        output = render_template(
            str(request["text"]), request["context"], name=str(request.get("name", "template")),
            siblings={str(k): str(v) for k, v in siblings.items()}
            if isinstance(siblings, dict) else None)
        # Only the surrogates that stand for a byte, and bytes that are UTF-8 together as text.
        return {"output": output if output.isascii() else go_string(go_bytes(output))}
    except TemplateFailed as exc:
        failure = exc.failure
    return {"failure": {"kind": failure.kind, "line": failure.line,
                        "expensive": failure.expensive, "template": failure.template}}


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer requests until stdin ends."""
    while True:
        try:
            request = read_frame(stdin)
            if request is None:
                return
            reply = _handle(request)
        except MemoryError:  # the request itself did not fit (a huge context)
            reply = {"failure": {"kind": "the template's input needed more memory than allowed",
                                 "line": None, "expensive": True}}
        stdout.write(encode_frame(reply))
        stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m syncd.template_worker")
    parser.add_argument("--memory", type=int, required=True,
                        help="bytes of address space a render may use beyond the idle worker's")
    args = parser.parse_args(argv)
    _end_with_parent()
    _limit_address_space(args.memory)
    stdout = sys.stdout.buffer
    stdout.write(encode_frame({"ready": True}))
    stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    serve(sys.stdin.buffer, stdout)


if __name__ == "__main__":
    main()
