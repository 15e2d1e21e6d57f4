"""Both command lines: help, version, bad options, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_logs_ready_and_stops_on_signal(service: str, signum: signal.Signals) -> None:
    process = subprocess.Popen(
        _command(service, "run"), stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
    )
    assert process.stderr is not None
    try:
        first = json.loads(process.stderr.readline())  # blocks until the first line: "ready"
        assert first["event"] == "ready" and first["level"] == "info"
        sent = time.monotonic()
        process.send_signal(signum)
        returncode = process.wait(timeout=2)
        elapsed = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    assert returncode == 0
    assert elapsed < 2
    rest = [json.loads(line) for line in process.stderr.read().splitlines()]
    assert [entry["event"] for entry in rest] == ["stopped"]
