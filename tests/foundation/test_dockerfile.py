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


# --- dependency versions: floors without advisories, exact pins the image installs --------

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / "constraints.txt"
#: Floors below which a published advisory applies (the issue's list; pyproject may be higher).
ADVISORY_FLOORS = {"jinja2": "3.1.6", "aiohttp": "3.14.3", "requests": "2.33.0",
                   "urllib3": "2.7.0"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not re.search(r"[<>=!~;, ]", version), f"not exact: {line}"
            pins[_canonical(name)] = version
    return pins


def _runtime_closure() -> dict[str, str]:
    """Every runtime dependency, transitive ones included, as installed here."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    found: dict[str, str] = {}

    def walk(name: str) -> None:
        if _canonical(name) in found:
            return
        dist = distribution(name)
        found[_canonical(name)] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                walk(requirement.name)

    for text in PROJECT["dependencies"]:
        walk(Requirement(text).name)
    return found


def test_the_image_installs_with_the_constraints_file() -> None:
    build = STAGES[0]
    assert any(i.startswith("COPY ") and "constraints.txt" in i for i in build)
    installs = [i for i in FINAL if "pip install" in i]
    assert installs and all("--constraint /wheels/constraints.txt" in i for i in installs)
    assert any("constraints.txt /wheels/" in i for i in build), "not carried to the final stage"


def test_constraints_pin_every_runtime_dependency_exactly() -> None:
    closure = _runtime_closure()
    expected = "\n".join(f"{name}=={version}" for name, version in sorted(closure.items()))
    assert _pins() == closure, f"constraints.txt should list exactly:\n{expected}"


def test_floors_exclude_versions_with_advisories() -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    declared = {_canonical(Requirement(t).name): Requirement(t)
                for t in PROJECT["dependencies"]}
    pins = _pins()
    for name, floor in ADVISORY_FLOORS.items():
        floors = [Version(s.version) for s in declared[name].specifier if s.operator == ">="]
        assert floors and max(floors) >= Version(floor), f"{name}: the floor allows < {floor}"
    for name, requirement in declared.items():
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs floor"
