"""The leak sweep: every text the run produced, searched for every secret it used.

Texts: syncd's stdout and stderr (JSON log lines, exception messages and tracebacks, and its
spans: the console span exporter writes to stderr), every Event in the cluster, and the status
of every VaultStaticSecret. Secrets: every value written to Vault, Vault's tokens, the unseal
keys (shares) and syncd's ServiceAccount token. The figure must be 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def sweep(texts: Mapping[str, str], secrets: Iterable[str]) -> dict[str, list[str]]:
    """``{source: [a short, safe label of each secret found in it]}``, sources with none left
    out. A label is the secret's first 4 characters and its length: the report must not carry
    what it looks for."""
    wanted = [s for s in set(secrets) if len(s) >= 8]
    found: dict[str, list[str]] = {}
    for source, text in texts.items():
        hits = sorted(f"{s[:4]}…({len(s)})" for s in wanted if s in text)
        if hits:
            found[source] = hits
    return found


def count(found: Mapping[str, list[str]]) -> int:
    return sum(len(hits) for hits in found.values())
