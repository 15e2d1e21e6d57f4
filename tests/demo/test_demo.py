"""`make demo` tells its whole story and ends well: the main job is tested like the rest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_to_the_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in ("unsealer init", "all 3 pods unsealed", "over https: only pods of StatefulSet",
                 "Secret app/web created",
                 "restarted once", "recovered hands-off", "exit code 0", "demo done"):
        assert step in out, step
    assert ": 0 found" in out  # no secret value in any log line or Event
