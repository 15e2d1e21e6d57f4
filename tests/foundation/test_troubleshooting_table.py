"""README's troubleshooting table names every condition and Event reason the code can emit.

The reasons are found in the source as they are written there: ``reason="X"`` (keywords and
class attributes), ``reason, message = "X", ...``, ``status, reason = ..., "X"`` and the
returns of the functions that choose a reason (``_*_reason``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONDITION_STATUSES = {"True", "False", "Unknown"}
PATTERNS = (
    re.compile(r'reason\w*(?:,\s*\w+)?\s*(?::\s*str\s*)?=\s*\(?"([A-Z][A-Za-z]+)"'),
    re.compile(r'status, reason = "\w+", "([A-Z][A-Za-z]+)"'),
)
# A top-level ``def _..reason(`` up to the next top-level line (a signature's closing
# parenthesis at column 0 does not end it).
CHOOSER = re.compile(r"\ndef _\w*reason\(.*?(?=\n[^\s)])", re.S)


def emitted() -> set[str]:
    found: set[str] = set()
    for package in ("syncd", "unsealer"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            for pattern in PATTERNS:
                found.update(pattern.findall(text))
            for chooser in CHOOSER.findall(text):
                found.update(re.findall(r'return \(?"([A-Z][A-Za-z]+)"', chooser))
    return found - CONDITION_STATUSES


def test_every_reason_is_in_the_troubleshooting_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Troubleshooting"):]
    documented = set(re.findall(r"^\| `([A-Z][A-Za-z]+)`(?: / `([A-Z][A-Za-z]+)`)?", table,
                                re.M))
    names = {name for pair in documented for name in pair if name}
    reasons = emitted()
    # The search itself finds what it must (a regression here would pass the test vacuously).
    assert {"SecretSynced", "VaultSealed", "Unsealed", "NotAVaultPod", "DeploymentPaused",
            "Pending", "VaultAuthGlobalNotAllowed"} <= reasons
    assert reasons - names == set(), "add these reasons to README's Troubleshooting table"
    assert names - reasons == set(), "these reasons in the table are emitted nowhere"
