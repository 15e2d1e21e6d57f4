"""Both command lines: help, version, bad options, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

SERVICES = ("syncd", "unsealer")


def _command(service: str, *args: str) -> list[str]:
    return [sys.executable, "-m", service, *args]


def _run(
    service: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(service, *args), check=False, capture_output=True, text=True, timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("service", SERVICES)
def test_help_documents_every_option(service: str) -> None:
    top = _run(service, "--help")
    assert top.returncode == 0 and "run" in top.stdout
    run = _run(service, "run", "--help")
    assert run.returncode == 0
    prefix = service.upper() + "_"
    for flag in ("--log-level", "--log-format"):
        assert flag in run.stdout
        assert prefix + flag[2:].upper().replace("-", "_") in run.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_version(service: str) -> None:
    result = _run(service, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"{service} ")


@pytest.mark.parametrize("service", SERVICES)
def test_bad_flag_value_is_one_line_naming_the_option(service: str) -> None:
    result = _run(service, "run", "--log-level", "loud")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--log-level" in lines[0] and "loud" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_bad_environment_value_is_one_line_naming_the_variable(service: str) -> None:
    variable = f"{service.upper()}_LOG_FORMAT"
    result = _run(service, "run", env={variable: "xml"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "--log-format" in lines[0]


@pytest.mark.parametrize("service", SERVICES)
def test_bad_otel_setting_is_one_line(service: str) -> None:
    result = _run(service, "run", env={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OTEL_TRACES_EXPORTER" in lines[0]


def test_flag_beats_environment() -> None:
    result = _run("syncd", "run", "--log-level", "bogus", env={"SYNCD_LOG_LEVEL": "debug"})
    assert result.returncode == 2 and "--log-level" in result.stderr


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Both emulations in a process of their own, as `python -m testbed up` runs them."""
    directory = tmp_path_factory.mktemp("testbed")
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed", "up", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (directory / "ready").exists():
            assert process.poll() is None, "the testbed exited"
            assert time.monotonic() < deadline, "the testbed did not get ready"
            time.sleep(0.05)  # polling a file another process writes
        _install_crds(directory)
        yield directory
    finally:
        process.terminate()
        process.wait(timeout=10)


def _install_crds(directory: Path) -> None:
    """The CRDs, as a person installs them: kubectl apply, then wait until Established."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot install the CRDs the way a person does")
    base = [kubectl, "--kubeconfig", str(directory / "kubeconfig"),
            "--cache-dir", str(directory / "kubectl-cache")]
    crds = Path(__file__).resolve().parents[2] / "manifests" / "crds"
    for command in (["apply", "-f", str(crds)],
                    ["wait", "--for", "condition=Established", "crd", "--all", "--timeout=20s"]):
        result = subprocess.run(
            [*base, *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr


def _read_until_ready(stream: IO[str]) -> list[dict[str, object]]:
    lines = []
    for raw in stream:
        lines.append(json.loads(raw))
        if lines[-1]["event"] == "ready":
            return lines
    raise AssertionError(f"no 'ready' line: {lines}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_syncd_run_logs_ready_and_stops_on_signal(testbed: Path, signum: signal.Signals) -> None:
    process = subprocess.Popen(
        _command("syncd", "run", "--kubeconfig", str(testbed / "kubeconfig"),
                 "--namespace", "default", "--health-address", "127.0.0.1:0"),
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
    )
    assert process.stderr is not None
    try:
        lines = _read_until_ready(process.stderr)
        assert lines[-1]["level"] == "info"
        sent = time.monotonic()
        process.send_signal(signum)
        returncode = process.wait(timeout=2)
        elapsed = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    assert returncode == 0
    assert elapsed < 2
    rest = [json.loads(line)["event"] for line in process.stderr.read().splitlines()]
    assert rest[-1] == "stopped"


@pytest.mark.parametrize(("content", "says"), [
    ("apiVersion: v1\nusers:\n- name: u\n  user: {token: TOKEN-abc123}\n  [", "not YAML (line"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", "no current-context"),
    (None, "cannot be read"),
])
def test_an_unusable_kubeconfig_is_one_line_without_its_content(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    result = _run("syncd", "run", "--kubeconfig", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"syncd: error: --kubeconfig {path}: {says}"), lines[0]
    assert "TOKEN-abc123" not in result.stderr + result.stdout
