"""Secret material in and out of the one-shot commands: stdin, the root token file, the rescue.

- **stdin** (``custody import``): read straight from file descriptor 0 into a buffer we wipe,
  never through ``input()`` or a ``TextIOWrapper`` that keeps its own copies. On a terminal,
  echo is switched off first (as ``getpass`` does) and input is read until EOF, because init
  output is many lines and pasting it must not leave it on the screen.
- **the root token file**: created ``0600`` with ``O_EXCL`` *before* ``sys/init`` is called, so
  the token, once Vault has made it, always has somewhere to go; if the path exists or cannot be
  created, ``init`` refuses to start rather than learn it with a token in hand.
- **the rescue** (``init``): if distributing the shares fails in a way the custody layer did not
  catch, the shares exist only in this process. They are written, in the format
  ``vault operator init`` prints (so ``unsealer custody import`` reads the file back), to a new
  ``0600`` file; if even that fails they are printed on stdout, because a Vault whose shares are
  lost can never be unsealed again. That is the one case where shares are shown. A root token
  that its custodian could not take is saved the same way (:func:`rescue_root_token`), in the
  fallback file format that ``unsealer custody import --fallback-file`` reads back.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from unsealer.commands.runner import usage_error
from unsealer.custody.distribution import root_token_marker
from unsealer.custody.file import write_private_file
from unsealer.init_output import RootToken
from unsealer.shares import zero

#: ``vault operator init`` prints about 1 KB; anything near this is not init output.
MAX_INPUT_BYTES = 64 * 1024

PROMPT = (
    "Paste the output of `vault operator init`, then press Ctrl-D on an empty line "
    "(nothing you paste is shown):"
)


def read_secret_input(fd: int = 0) -> bytearray:
    """All of ``fd`` (stdin) into a buffer the caller wipes; without echo on a terminal."""
    if os.isatty(fd):
        return _read_terminal(fd)
    return _read_all(fd)


def _read_terminal(fd: int) -> bytearray:
    import termios  # noqa: PLC0415  (POSIX only, and only needed on a terminal)

    previous = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO  # local modes: no echo; canonical mode stays, so Ctrl-D is EOF
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        print(PROMPT, file=sys.stderr, flush=True)
        return _read_all(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, previous)


def _read_all(fd: int) -> bytearray:
    # Sized up front: a growing bytearray leaves unwiped copies behind as it reallocates.
    buffer = bytearray(MAX_INPUT_BYTES)
    view = memoryview(buffer)
    filled = 0
    try:
        while True:
            if filled == len(buffer):
                usage_error(
                    f"the input is larger than {MAX_INPUT_BYTES // 1024} KiB: not the output "
                    "of vault operator init"
                )
            count = os.readv(fd, [view[filled:]])
            if count == 0:
                break
            filled += count
    except BaseException:
        view.release()
        zero(buffer)
        raise
    view.release()
    del buffer[filled:]
    return buffer


class TokenFile:
    """A new, empty 0600 file, made before the root token exists, written once."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def create(cls, path: Path) -> TokenFile:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            usage_error(f"--root-token-file {path} already exists; it is never overwritten")
        except OSError as exc:
            usage_error(f"--root-token-file {path}: {exc.strerror}")
        return cls(path, fd)

    def write(self, token: str) -> None:
        """Write the token, flush it to disk and close the file."""
        if self._fd is None:
            raise RuntimeError("the root token file was already written or abandoned")
        content = bytearray(token.encode("ascii") + b"\n")
        try:
            view = memoryview(content)
            written = 0
            while written < len(content):
                written += os.write(self._fd, view[written:])
            view.release()
            os.fsync(self._fd)
        finally:
            zero(content)
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """Remove the file if nothing was written to it (the command stopped before)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)


def check_fallback_dir(text: str) -> Path:
    """The fallback directory, refused up front when a share file could not be made there."""
    directory = Path(text).expanduser()
    if not directory.is_dir():
        usage_error(f"--fallback-dir {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        usage_error(f"--fallback-dir {directory} is not writable")
    return directory.resolve()  # so that the error naming the file names it from anywhere


def init_output_text(keys: Sequence[str], *, threshold: int) -> bytearray:
    """Shares as ``vault operator init`` prints them (readable by ``unsealer custody import``)."""
    lines = [f"Unseal Key {number}: {key}" for number, key in enumerate(keys, start=1)]
    lines += [
        "",
        f"Vault initialized with {len(keys)} key shares and a key threshold of {threshold}.",
        "These shares could not be stored at their custodians. Store them (unsealer custody",
        "import < this-file), then delete this file.",
    ]
    content = bytearray("\n".join(lines).encode("ascii") + b"\n")
    lines.clear()
    return content


def rescue(keys: Sequence[str], *, threshold: int, directory: Path) -> str:
    """Save shares that would otherwise be lost; where they went, in words for the error line.

    Blocking on purpose: it runs while the command is failing (possibly being cancelled), when
    awaiting anything more is not safe.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"unsealer-init-rescue-{stamp}-{secrets.token_hex(3)}.txt"
    content = init_output_text(keys, threshold=threshold)
    try:
        write_private_file(path, content, overwrite=False)
        return f"all {len(keys)} shares were written to {path} (mode 0600)"
    except OSError:
        # The last resort: on the terminal rather than lost for good.
        print("WARNING: the unseal shares could not be stored anywhere; they follow. Save "
              "them now (unsealer custody import reads this format).", file=sys.stderr)
        print(content.decode("ascii"), flush=True)
        return f"all {len(keys)} shares were printed on stdout (no file could be written)"
    finally:
        zero(content)


def rescue_root_token(token: RootToken, *, custodian: str, where: str, directory: Path) -> str:
    """Save a root token its custodian could not take; where it went, in words.

    Blocking on purpose, like :func:`rescue`. The file is a fallback file
    (:func:`~unsealer.custody.distribution.parse_fallback`): ``unsealer custody import
    --fallback-file`` stores the token at ``custodian`` once it works.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"unsealer-root-token-{stamp}-{secrets.token_hex(3)}.txt"
    header = (
        f"# The initial root token, which custodian {custodian!r} could not store "
        f"(vault-syncd unsealer, {stamp}).\n"
        "# Store it with `unsealer custody import --fallback-file this-file` once the custodian "
        "works,\n# then delete this file.\n"
        f"{root_token_marker(custodian, where)}\n"
    ).encode("ascii")
    content = bytearray(header + token.reveal().encode("ascii") + b"\n")
    try:
        write_private_file(path, content, overwrite=False)
        return f"the root token was written to {path} (mode 0600)"
    except OSError:
        print("WARNING: the root token could not be stored anywhere; it follows. Save it now.",
              file=sys.stderr)
        print(f"Initial Root Token: {token.reveal()}", flush=True)
        return "the root token was printed on stdout (no file could be written)"
    finally:
        zero(content)
