"""The Dockerfile's invariants, checked by reading it (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]
STAGES: list[list[str]] = []
for instruction in INSTRUCTIONS:
    if instruction.upper().startswith("FROM "):
        STAGES.append([])
    STAGES[-1].append(instruction)
FINAL = STAGES[-1]


def test_multi_stage_from_pinned_slim_base() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        image = stage[0].split()[1]
        assert image.startswith("python:3.12-slim"), image
        assert ":" in image and not image.endswith(":latest")


def test_final_stage_runs_as_non_root_numeric_user() -> None:
    users = [i.split()[1] for i in FINAL if i.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


def test_final_stage_installs_the_wheel_only() -> None:
    copies = [i for i in FINAL if i.upper().startswith("COPY ")]
    assert copies and all("--from=" in c and "/wheels" in c for c in copies), copies
    assert any("pip install" in i and ".whl" in i for i in FINAL)


def test_no_architecture_specific_steps() -> None:
    lowered = DOCKERFILE.lower()
    for word in ("amd64", "x86_64", "aarch64", "arm64", "--platform"):
        body = "\n".join(line for line in lowered.splitlines() if not line.startswith("#"))
        assert word not in body, word


def test_nothing_written_outside_tmp_at_run_time() -> None:
    environment = " ".join(i for i in FINAL if i.upper().startswith("ENV "))
    assert "PYTHONDONTWRITEBYTECODE=1" in environment
    assert "HOME=/tmp" in environment


def test_command_is_an_entry_point_of_the_distribution() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"syncd", "unsealer"}
    [command] = [i for i in FINAL if i.upper().startswith("CMD ")]
    argv = json.loads(command[4:])
    assert argv[0] in scripts
    for module in scripts.values():
        package = module.split(".")[0]
        copied = any(f"COPY {package} " in i for i in STAGES[0])
        assert copied, f"{package} is not copied into the build stage"
