"""The entry-layer options of ``syncd run``: leader election and the probe address."""

from __future__ import annotations

import pytest

from syncd.cli import _settings, build_parser, main


def test_defaults_are_vso_and_controller_runtime_ones() -> None:
    settings = _settings(build_parser().parse_args(["run"]))
    assert settings.leader_elect is True
    assert settings.leader_election_namespace is None  # --namespace
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds,
            settings.retry_period_seconds) == (15.0, 10.0, 2.0)
    assert settings.health_address == "0.0.0.0:8080"
    lease = settings.lease()
    assert lease.namespace == "vault-syncd" and lease.name == "vault-syncd"
    assert lease.identity != settings.lease().identity  # one per process start


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _settings(build_parser().parse_args(
        ["run", "--leader-elect=false", "--health-address", "", "--lease-duration", "30s",
         "--leader-election-namespace", "ops"]))
    assert parsed.leader_elect is False and parsed.health_address == ""
    assert parsed.lease_duration_seconds == 30.0
    assert parsed.leader_election_namespace == "ops"
    monkeypatch.setenv("SYNCD_HEALTH_ADDRESS", "")
    monkeypatch.setenv("SYNCD_LEADER_ELECT", "no")
    parsed = _settings(build_parser().parse_args(["run"]))
    assert parsed.health_address == "" and parsed.leader_elect is False


@pytest.mark.parametrize("argv, named", [
    (["--health-address", "8080"], "--health-address"),
    (["--leader-elect", "maybe"], "--leader-elect"),
    (["--renew-deadline", "20s"], "--renew-deadline"),  # longer than the lease
])
def test_bad_values_end_with_one_line_and_exit_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err


def test_template_options() -> None:
    defaults = _settings(build_parser().parse_args(["run"]))
    assert (defaults.template_deadline_seconds, defaults.template_memory_bytes,
            defaults.template_workers) == (1.0, 24 * 1024 * 1024, 2)
    parsed = _settings(build_parser().parse_args(
        ["run", "--template-deadline", "0.5s", "--template-memory-mib", "48",
         "--template-workers", "3"]))
    assert (parsed.template_deadline_seconds, parsed.template_memory_bytes,
            parsed.template_workers) == (0.5, 48 * 1024 * 1024, 3)
