"""Read what ``vault operator init`` printed, so that ``unsealer import`` can take it from stdin.

People pipe or paste the terminal output (``Unseal Key 1: ...``, ``Initial Root Token: ...``,
then a paragraph of prose), sometimes with the colour codes of a TTY or the CRLFs of a Windows
clipboard; scripts use ``-format=json``. Both are accepted. The key threshold and share count
come from the prose ("Vault initialized with 5 key shares and a key threshold of 3") or the
JSON fields, when present.

Every error names a line number or a field and never repeats the input: a message about a
malformed line must not be the place a share ends up in a terminal scrollback or a CI log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from unsealer.shares import SecretBytes, Share, ShareError, wipe_all

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_UNSEAL_KEY = re.compile(r"Unseal Key (\d+):\s*(\S+)")
_RECOVERY_KEY = re.compile(r"Recovery Key \d+:")
_ROOT_TOKEN = re.compile(r"Initial Root Token:\s*(\S+)")
_SUMMARY = re.compile(
    r"Vault initialized with (\d+) key shares? and\s+a key threshold of (\d+)", re.IGNORECASE
)


class InitOutputError(ValueError):
    """The text is not usable init output. Never quotes the text."""


class RootToken(SecretBytes):
    """The initial root token: wipeable, never shown."""

    __slots__ = ()

    def reveal(self) -> str:
        """The token, to use once (for example to revoke it)."""
        return self._view().decode("ascii")


@dataclass(frozen=True, eq=False)  # no comparing or hashing of secrets
class InitOutput:
    """What ``vault operator init`` gave; ``with`` wipes everything on exit."""

    shares: tuple[Share, ...]
    threshold: int | None = None
    share_count: int | None = None
    root_token: RootToken | None = None

    def wipe(self) -> None:
        wipe_all(self.shares)
        if self.root_token is not None:
            self.root_token.wipe()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()


def parse_init_output(text: str | bytes) -> InitOutput:
    """Parse terminal or ``-format=json`` output of ``vault operator init``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InitOutputError("init output is not UTF-8 text") from None
    text = _ANSI.sub("", text).lstrip("\ufeff")
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    return _parse_terminal(text)


def _parse_terminal(text: str) -> InitOutput:
    numbered: dict[int, Share] = {}
    token: RootToken | None = None
    try:
        for line_number, raw_line in enumerate(text.splitlines(), start=1):
            line = raw_line.strip()
            if _RECOVERY_KEY.match(line):
                raise InitOutputError(
                    f"line {line_number}: recovery keys cannot unseal (this Vault auto-unseals)"
                )
            if match := _UNSEAL_KEY.fullmatch(line):
                number = int(match[1])
                if number in numbered:
                    raise InitOutputError(f"line {line_number}: unseal key {number} repeats")
                numbered[number] = _share(match[2], f"line {line_number}: unseal key {number}")
            elif match := _ROOT_TOKEN.fullmatch(line):
                if token is not None:
                    raise InitOutputError(f"line {line_number}: a second root token")
                token = RootToken(match[1].encode("ascii", "replace"), origin="init output")
            elif line.startswith(("Unseal Key", "Initial Root Token")):
                what = "unseal key" if line.startswith("Unseal") else "root token"
                raise InitOutputError(f"line {line_number}: malformed {what} line")
        if not numbered:
            raise InitOutputError("no 'Unseal Key N: ...' lines in the init output")
        if sorted(numbered) != list(range(1, len(numbered) + 1)):
            raise InitOutputError(
                f"unseal keys are not numbered 1..{len(numbered)}: some are missing"
            )
        shares = tuple(numbered[number] for number in sorted(numbered))
        threshold = count = None
        if summary := _SUMMARY.search(" ".join(text.split())):
            count, threshold = int(summary[1]), int(summary[2])
        return _checked(shares, threshold=threshold, count=count, token=token)
    except BaseException:
        wipe_all(list(numbered.values()))
        if token is not None:
            token.wipe()
        raise


def _parse_json(text: str) -> InitOutput:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InitOutputError(
            f"init output looks like JSON but is not (line {getattr(exc, 'lineno', '?')})"
        ) from None
    if not isinstance(document, dict):
        raise InitOutputError("JSON init output is not an object")
    if document.get("recovery_keys_b64") and not document.get("unseal_keys_b64"):
        raise InitOutputError("recovery keys cannot unseal (this Vault auto-unseals)")
    b64 = _strings(document, "unseal_keys_b64")
    hexes = _strings(document, "unseal_keys_hex")
    if not b64 and not hexes:
        raise InitOutputError("JSON init output has neither unseal_keys_b64 nor unseal_keys_hex")
    shares: list[Share] = []
    others: list[Share] = []
    token: RootToken | None = None
    try:
        primary, secondary = (b64, hexes) if b64 else (hexes, [])
        name = "unseal_keys_b64" if b64 else "unseal_keys_hex"
        for index, value in enumerate(primary):
            shares.append(_share(value, f"{name}[{index}]"))
        if secondary:
            if len(secondary) != len(primary):
                raise InitOutputError("unseal_keys_b64 and unseal_keys_hex differ in length")
            for index, value in enumerate(secondary):
                others.append(_share(value, f"unseal_keys_hex[{index}]"))
            if any(a != b for a, b in zip(shares, others, strict=True)):
                raise InitOutputError("unseal_keys_b64 and unseal_keys_hex disagree")
        root = document.get("root_token")
        if root is not None:
            if not isinstance(root, str) or not root.isascii():
                raise InitOutputError("root_token is not a string")
            token = RootToken(root.encode("ascii"), origin="init output")
        return _checked(
            tuple(shares),
            threshold=_number(document, "unseal_threshold"),
            count=_number(document, "unseal_shares"),
            token=token,
        )
    except BaseException:
        wipe_all(shares)
        if token is not None:
            token.wipe()
        raise
    finally:
        wipe_all(others)


def _share(text: str, where: str) -> Share:
    try:
        return Share.parse(text, origin=where)
    except ShareError:
        raise InitOutputError(
            f"{where} is not an unseal share (PGP-encrypted keys must be decrypted first)"
        ) from None


def _checked(
    shares: tuple[Share, ...], *, threshold: int | None, count: int | None, token: RootToken | None
) -> InitOutput:
    if count is not None and count != len(shares):
        raise InitOutputError(f"the output says {count} key shares but holds {len(shares)}")
    if threshold is not None and not 1 <= threshold <= len(shares):
        raise InitOutputError(f"key threshold {threshold} does not fit {len(shares)} shares")
    for index, share in enumerate(shares):
        if any(share == other for other in shares[index + 1 :]):
            raise InitOutputError(f"{share.origin} appears twice")
    return InitOutput(shares=shares, threshold=threshold, share_count=count, root_token=token)


def _strings(document: dict[str, Any], key: str) -> Sequence[str]:
    value = document.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InitOutputError(f"{key} is not a list of strings")
    return value


def _number(document: dict[str, Any], key: str) -> int | None:
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InitOutputError(f"{key} is not a number")
    return value
