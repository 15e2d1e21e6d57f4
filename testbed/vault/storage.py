"""The storage every instance of one emulated cluster shares, optionally persisted to a directory.

Real Vault keeps everything (mounts, KV data, policies, auth config, tokens, the encrypted root
key) in its storage backend; raft replicates it, so vault-0/1/2 see the same data while each
holds its own seal state in memory. Here one :class:`Storage` object plays the replicated
backend: each subsystem attaches a named section (its state as JSON-able data) and marks the
storage changed after a mutation. With a directory, the document is rewritten atomically after
every mutating request and read back at the next start, which is what makes a process restart
come back sealed with its data intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_FILE = "vault-storage.json"


class Storage:
    """Named JSON sections, loaded once and written back when changed."""

    def __init__(self, *, directory: Path | None = None) -> None:
        self.directory = directory
        self._loaded: dict[str, Any] = {}
        self._dumpers: dict[str, Callable[[], Any]] = {}
        self._dirty = False
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / STATE_FILE
            if path.exists():
                self._loaded = json.loads(path.read_text())

    def attach(self, name: str, dump: Callable[[], Any]) -> Any:
        """Register ``dump`` as the source of section ``name``; return what was stored for it."""
        self._dumpers[name] = dump
        return self._loaded.get(name)

    def changed(self) -> None:
        """Note that some section changed; the next :meth:`flush` writes the document."""
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if self.directory is None:
            return
        document = dict(self._loaded)
        document.update({name: dump() for name, dump in self._dumpers.items()})
        path = self.directory / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, sort_keys=True))
        os.replace(temporary, path)
