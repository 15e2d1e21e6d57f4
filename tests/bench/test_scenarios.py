"""Each benchmark scenario at a tiny size (seconds), so the harness cannot rot unnoticed.

The figures are not judged (benchmarks are not tests, and 2 shared cores are noisy); what is
checked is that every scenario runs end to end against real processes and measures something
consistent: every Secret synced, every rotation seen, reads counted, memory read from /proc.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import __main__ as cli
from bench import cold_sync, harness, memory, rotation, steady


def _args(**overrides: object) -> argparse.Namespace:
    defaults = vars(cli._parser().parse_args(["limit"]))
    return argparse.Namespace(**{**defaults, **overrides})


async def test_cold_sync_and_its_limit_sync_every_secret() -> None:
    synced = await cold_sync.run(_args(secrets=5, refresh=30.0))
    assert synced["seconds"] > synced["first_secret_after_s"] > 0
    assert synced["rss_mib_after"] > 10
    assert synced["limit_per_second"] > 0


async def test_steady_counts_refreshes_and_requests() -> None:
    figures = await steady.run(_args(secrets=5, refresh=1.0, window=2.0))
    assert figures["refreshes_done"] >= 5  # every object refreshed at least once in 2 s
    assert figures["vault_other_requests"] == 0
    assert figures["kube_requests_not_lease"] == 0, figures["kube_requests_not_lease_detail"]


async def test_rotation_sees_every_write() -> None:
    figures = await rotation.run(_args(secrets=5, refresh=1.0, writes=3, rate=20.0, debounce=0.2))
    assert figures["rotated"] == 3 and figures["not_rotated"] == 0
    assert figures["deployment_restarts"] == 1
    assert 0 < figures["p50_s"] <= figures["p99_s"] <= figures["max_s"]


@pytest.mark.parametrize("source", ["events", "audit"])
async def test_rotation_with_a_source_reads_once_per_write(source: str) -> None:
    figures = await rotation.run(_args(secrets=5, refresh=30.0, writes=3, rate=20.0,
                                       debounce=0.2, source=source, latency_blocks=1))
    assert figures["rotated"] == 3 and figures["not_rotated"] == 0
    assert figures["vault_reads_per_write"] == 1.0  # a notice, not refreshAfter's poll (30 s)
    assert figures["p99_s"] < 5.0  # polling would take 20 s or more here
    if source == "audit":
        assert figures["latency_writes_each"] == rotation.LATENCY_BLOCK
        # 100 writes a block: the Vault emulation's CPU is read from /proc in both modes.
        assert all(ms > 0 for ms in figures["vault_cpu_ms_per_write"].values())
        assert "relay_cpu_ms_per_vault_request" in figures


async def test_memory_reads_the_process_tree() -> None:
    figures = await memory.run(_args(sizes=[], refresh=30.0))
    assert figures["idle_rss_mib"] > 10
    assert figures["idle_processes"] >= 1


def test_report_writes_json_and_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    path = harness.report("steady", parameters={"secrets": 5}, suffix="-5",
                          results={"cpu_ms_per_refresh": 0.4},
                          rows=[("cpu_ms_per_refresh", 0.4, "≤ 0.5")])
    document = json.loads(path.read_text())
    assert document["results"] == {"cpu_ms_per_refresh": 0.4}
    assert document["environment"]["cores"] and document["environment"]["python"]
    assert "| cpu_ms_per_refresh | 0.4 | ≤ 0.5 |" in capsys.readouterr().out


def test_percentile_is_a_measured_value() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 0.99) == 99.0
    assert harness.percentile(values, 0.5) == 50.0
    assert harness.percentile([3.0], 0.99) == 3.0
