"""docs/configuration.md is what the option definitions say today: regenerated and compared."""

from __future__ import annotations

from pathlib import Path

from plumbing.options_doc import reference

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m plumbing.options_doc syncd.cli unsealer.cli > docs/configuration.md"


def test_the_configuration_reference_is_up_to_date() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == reference(["syncd.cli", "unsealer.cli"]), f"stale: run {COMMAND}"


def test_every_option_of_both_services_is_in_it() -> None:
    text = reference(["syncd.cli", "unsealer.cli"])
    for row in ("| `--leader-elect` | `SYNCD_LEADER_ELECT` | `True` |",
                "| `--lease-duration` | `SYNCD_LEASE_DURATION` | `15s` |",
                "| `--custody-config` | `UNSEALER_CUSTODY_CONFIG` |",
                "| `--health-address` | `UNSEALER_HEALTH_ADDRESS` |"):
        assert row in text, row
    for command in ("## `syncd run`", "## `unsealer run`", "## `unsealer init`",
                    "## `unsealer custody verify`"):
        assert command in text, command
    assert "(env " not in text  # the suffix --help shows is a column here
