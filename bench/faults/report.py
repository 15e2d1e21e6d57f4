"""One row per scenario, the JSON document and the Markdown table.

The row is the contract between the runner and every scenario that reports into it (the
unsealer's scenarios in ``bench/unsealer_faults.py`` return rows of the same shape).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import report


@dataclass
class Row:
    scenario: str
    faults_injected: str
    rotations_written: int
    rotations_delivered: int
    violations: list[str] = field(default_factory=list)
    recovery_s: float | None = None  #: fault cleared → everything delivered; None: never
    #: requests per second, per server (``{"kube": 40.8, "vault": 167.3}``), or one figure
    max_request_rate: dict[str, float] | float = field(default_factory=dict)
    notes: str = ""


def _rate(rates: Mapping[str, float] | float) -> str:
    if not isinstance(rates, Mapping):
        return f"{rates:g}/s"
    return ", ".join(f"{server} {rate:g}/s" for server, rate in rates.items()) or "-"


def markdown(rows: Iterable[Row]) -> str:
    lines = ["| scenario | injected faults | rotations written / delivered | violations |"
             " recovery | max request rate |", "|---|---|---|---|---|---|"]
    for row in rows:
        violations = "; ".join(row.violations[:3]) + (
            f" (+{len(row.violations) - 3})" if len(row.violations) > 3 else "")
        recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f} s"
        lines.append(f"| {row.scenario} | {row.faults_injected} | {row.rotations_written} /"
                     f" {row.rotations_delivered} | {violations or '0'} | {recovery} |"
                     f" {_rate(row.max_request_rate)} |")
    return "\n".join(lines)


def write(rows: list[Row], *, parameters: Mapping[str, Any], results: Mapping[str, Any],
          name: str = "faults") -> Path:
    """``bench/results/<name>.json`` (the rows under ``results.rows``) and, on stdout, the
    machine, the summary and the table of the rows."""
    summary = [(key, value, TARGETS.get(key, "")) for key, value in results.items()]
    path = report(name, parameters=parameters, rows=summary,
                  results={**results, "rows": [dataclasses.asdict(row) for row in rows]})
    print(f"\n{markdown(rows)}")
    return path


TARGETS = {"leaks": "0", "violations": "0", "rss_slope_after_1_min_mib_per_min": "≈ 0"}
