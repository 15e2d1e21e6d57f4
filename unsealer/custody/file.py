"""A file of shares on local disk, readable by this process's user and nobody else.

A share file that others can read is not custody. Like lrstanley/vault-unseal, we refuse to
start when a share or identity file is not mode 0600 (0400 is fine too) and owned by the
process's user, and we re-check on the open file descriptor at every read, so that a file
swapped or chmod-ed after start is refused too. Writes go to a new file created 0600 with
``O_EXCL`` (there is no moment where the shares sit in a world-readable file) and then renamed
over the old one, so a crash leaves either the old shares or the new ones, never half.

Format: one share per line (hex or base64, or an age entry for an encrypted custodian); blank
lines and lines starting with ``#`` are ignored. The identity file holds an
``AGE-SECRET-KEY-1...`` line. All disk access runs in a thread: the event loop never blocks on
a slow SD card.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from unsealer.custody.custodian import CustodyError, Entry
from unsealer.shares import zero


def private_file_problem(path: Path) -> str | None:
    """Why ``path`` may not hold secrets (a sentence naming the file), or ``None`` if it may.

    A missing file is not a problem here; reading it is.
    """
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror}"
    return _status_problem(path, status)


def _status_problem(path: Path, status: os.stat_result) -> str | None:
    if not stat.S_ISREG(status.st_mode):
        return f"{path} is not a regular file"
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        return f"{path} is mode {mode:04o}; it must be 0600 (run: chmod 600 {path})"
    user = os.geteuid()
    if status.st_uid != user:
        return (
            f"{path} is owned by uid {status.st_uid}, not by this process's uid {user} "
            f"(run: chown {user} {path})"
        )
    return None


def read_private_file(path: Path) -> bytearray:
    """Read a 0600 file owned by us into a buffer the caller wipes (blocking: use a thread)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        status = os.fstat(fd)
        problem = _status_problem(path, status)
        if problem:
            raise PermissionError(problem)
        buffer = bytearray(status.st_size)
        view = memoryview(buffer)
        filled = 0
        while filled < len(buffer):
            count = os.readv(fd, [view[filled:]])
            if count == 0:
                break
            filled += count
        view.release()
        del buffer[filled:]
        return buffer
    finally:
        os.close(fd)


def write_private_file(path: Path, content: bytes | bytearray, *, overwrite: bool) -> None:
    """Write ``content`` to ``path`` as a 0600 file of ours (blocking: use a thread).

    With ``overwrite`` the file is written beside and renamed over ``path`` (atomic). Without,
    ``path`` must not exist (``FileExistsError``).
    """
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if overwrite else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(content)
            written = 0
            while written < len(content):
                written += os.write(fd, view[written:])
            view.release()
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(target, path)
    except BaseException:
        if overwrite:
            target.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # The rename is only durable once the directory is; a power cut is this project's use case.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBackend:
    """Entries are the lines of ``path``; the identity (if any) is in ``identity_file``."""

    writable = True

    def __init__(self, *, custodian: str, path: Path, identity_file: Path | None = None) -> None:
        self.custodian = custodian
        self.path = path
        self.identity_file = identity_file

    def describe(self) -> str:
        identity = f" (holds an age identity at {self.identity_file})" if self.identity_file else ""
        return f"{self.path}{identity}"

    async def read_entries(self, *, missing_ok: bool = False) -> list[Entry]:
        content = await self._read(self.path, missing_ok=missing_ok)
        if content is None:
            return []
        try:
            return _entries(content)
        finally:
            zero(content)

    async def write_entries(self, entries: Sequence[bytearray]) -> None:
        header = b"# unseal shares (vault-syncd unsealer); mode 0600, one a line\n"
        # Sized up front: a growing bytearray leaves unwiped copies behind as it reallocates.
        content = bytearray(len(header) + sum(len(entry) + 1 for entry in entries))
        content[: len(header)] = header
        offset = len(header)
        for entry in entries:
            content[offset : offset + len(entry)] = entry
            content[offset + len(entry)] = 0x0A
            offset += len(entry) + 1
        try:
            await asyncio.to_thread(write_private_file, self.path, content, overwrite=True)
        except OSError as exc:
            raise CustodyError(
                f"cannot write {self.path}: {exc.strerror or type(exc).__name__}",
                custodian=self.custodian,
            ) from None
        finally:
            zero(content)

    async def read_identity(self) -> bytearray | None:
        if self.identity_file is None:
            return None
        content = await self._read(self.identity_file, missing_ok=False)
        assert content is not None
        try:
            entries = _entries(content)
        finally:
            zero(content)
        if not entries:
            return None
        for _slot, extra in entries[1:]:
            zero(extra)
        return entries[0][1]

    async def _read(self, path: Path, *, missing_ok: bool) -> bytearray | None:
        try:
            return await asyncio.to_thread(read_private_file, path)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise CustodyError(f"{path} does not exist", custodian=self.custodian) from None
        except PermissionError as exc:
            # Ours (mode/owner) carry a full sentence; the OS's carry strerror.
            reason = exc.strerror or str(exc)
            raise CustodyError(f"refusing {path}: {reason}", custodian=self.custodian) from None
        except OSError as exc:
            raise CustodyError(
                f"cannot read {path}: {exc.strerror or type(exc).__name__}",
                custodian=self.custodian,
            ) from None


def _entries(content: bytearray) -> list[Entry]:
    entries: list[Entry] = []
    for number, line in enumerate(content.splitlines(), start=1):
        stripped = line.strip()
        zero(line)
        if stripped and not stripped.startswith(b"#"):
            entries.append((f"line{number}", stripped))
        else:
            zero(stripped)
    return entries
