"""Shares from an environment variable: for development and the demo, never for production.

Environment variables leak: ``kubectl describe pod`` shows literal values, ``/proc/<pid>/environ``
is readable by the same user, crash reporters collect them, and they are inherited by every
child process. They also cannot be wiped. This backend exists because a laptop demo should not
need a Kubernetes Secret; loading a config that uses it logs a warning (see :mod:`.config`).

Format: shares separated by whitespace or commas. Read-only: ``store`` is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from unsealer.custody.custodian import CustodyError, Entry

_SEPARATORS = re.compile(r"[\s,]+")


class EnvironmentBackend:
    writable = False

    def __init__(
        self,
        *,
        custodian: str,
        variable: str,
        identity_variable: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.custodian = custodian
        self.variable = variable
        self.identity_variable = identity_variable
        self._environ = os.environ if environ is None else environ

    def describe(self) -> str:
        identity = (
            f" (holds an age identity in ${self.identity_variable})"
            if self.identity_variable
            else ""
        )
        return f"${self.variable}{identity} (development only)"

    async def read_entries(self, *, missing_ok: bool = False) -> list[Entry]:
        if self.variable not in self._environ and not missing_ok:
            raise CustodyError(f"${self.variable} is not set", custodian=self.custodian)
        words = _SEPARATORS.split(self._environ.get(self.variable, "").strip())
        return [
            (f"{self.variable}[{index}]", bytearray(word.encode("ascii", "replace")))
            for index, word in enumerate((word for word in words if word), start=1)
        ]

    async def write_entries(self, entries: Sequence[bytearray]) -> None:
        raise CustodyError("environment variables are read-only", custodian=self.custodian)

    async def read_identity(self) -> bytearray | None:
        if self.identity_variable is None:
            return None
        value = self._environ.get(self.identity_variable, "").strip()
        return bytearray(value.encode("ascii", "replace")) if value else None
