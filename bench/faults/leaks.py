"""The leak sweep: every text the run produced, searched for every secret it used.

Texts: syncd's stdout and stderr (JSON log lines, exception messages and tracebacks, and its
spans: the console span exporter writes to stderr), every Event in the cluster, and the status
of every VaultStaticSecret. Secrets: every value written to Vault (as written, and base64 as
a Secret's data holds it), Vault's tokens, the unseal keys (shares) and syncd's ServiceAccount
token. The figure must be 0.

A soak writes thousands of values and syncd's stderr runs to hundreds of MiB with spans, so
the search is one pass per text: every token of the text (a run of the characters secrets are
made of) is cut into its substrings of each wanted length, looked up in a set. Secrets are
made of those characters, so none can hide across a token boundary.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

#: The characters of the secrets swept for: hex, base64 (standard and URL), JWT dots, and the
#: ledger's ``rot-`` prefix.
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]+")


def with_encodings(secrets: Iterable[str]) -> set[str]:
    """Each secret, and its base64 (a Secret's ``data`` holds values so)."""
    found = set()
    for secret in secrets:
        found.add(secret)
        found.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    return found


def sweep(texts: Mapping[str, str], secrets: Iterable[str]) -> dict[str, list[str]]:
    """``{source: [a short, safe label of each secret found in it]}``, sources with none left
    out. A label is the secret's first 4 characters and its length: the report must not carry
    what it looks for. Secrets shorter than 8 characters are not looked for."""
    wanted = {s for s in secrets if len(s) >= 8}
    odd = {s for s in wanted if _TOKEN.fullmatch(s) is None}  # searched the slow way
    lengths = sorted({len(s) for s in wanted - odd})
    found: dict[str, list[str]] = {}
    for source, text in texts.items():
        hits = {s for s in odd if s in text}
        for token in set(_TOKEN.findall(text)):
            for length in lengths:
                if length > len(token):
                    break
                for start in range(len(token) - length + 1):
                    piece = token[start:start + length]
                    if piece in wanted:
                        hits.add(piece)
        if hits:
            found[source] = sorted(f"{s[:4]}…({len(s)})" for s in hits)
    return found


def count(found: Mapping[str, list[str]]) -> int:
    return sum(len(hits) for hits in found.values())
