"""``unseal``: p99 from a Vault pod sealed to unsealed (20 restarts, 5 power losses; local and
peer custodians). Not measured yet: see bench/README.md."""

from __future__ import annotations

import argparse

TARGETS = {"p99_s": "≤ 1 s local custodians, ≤ 2 s with a peer"}


async def run(args: argparse.Namespace) -> dict[str, float]:
    raise SystemExit("unseal: not written yet; it waits for the unsealer's identity and custody"
                     " work (issue 10) in main. The other scenarios do not depend on it.")
