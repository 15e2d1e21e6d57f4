"""``init``'s last line of defence: shares are saved even when distribution fails unforeseen."""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pyshamir
import pytest

from unsealer.commands.initialize import hand_over
from unsealer.commands.runner import CommandError
from unsealer.commands.secret_io import rescue
from unsealer.custody.config import parse_config
from unsealer.init_output import parse_init_output
from unsealer.shares import Share
from unsealer.vault_sys import InitResult


class Exploding:
    """A custodian with a bug: ``store`` raises what no custody code expects."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, *, pod: str | None = None) -> list[Share]:
        return []

    async def store(self, shares: Sequence[Share], *, replace: bool = False) -> None:
        raise RuntimeError("a bug in a backend")

    def describe(self) -> str:
        return "a custodian with a bug"


def _keys() -> list[str]:
    return [bytes(part).hex() for part in pyshamir.split(os.urandom(32), 3, 2)]


async def test_an_unforeseen_failure_rescues_every_share_in_importable_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _keys()
    config = parse_config(
        {"threshold": 2, "shares": 3, "custodians": [
            {"name": f"c{n}", "kind": "file", "path": str(tmp_path / f"c{n}"), "shares": 1,
             "place": f"disk-{n}"}
            for n in range(3)]},
        source="test", vault_namespace="vault", require_files=False)
    custodians = {f"c{n}": Exploding(f"c{n}") for n in range(3)}

    with pytest.raises(CommandError) as error:
        await hand_over(
            InitResult(keys_hex=tuple(keys), root_token="hvs.test"), threshold=2,
            config=config, custodians=custodians,  # type: ignore[arg-type]
            fallback_dir=tmp_path, args=argparse.Namespace(replace=False,
                                                           allow_unsafe_custody=False))

    [saved] = tmp_path.glob("unsealer-init-rescue-*.txt")
    assert str(error.value) == (
        f"storing the shares failed (RuntimeError); all 3 shares were written to {saved} "
        "(mode 0600)")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    with parse_init_output(saved.read_text()) as parsed:
        assert [share.hex() for share in parsed.shares] == keys
        assert (parsed.threshold, parsed.share_count) == (2, 3)
    output = capsys.readouterr()
    assert all(key not in output.out + output.err for key in keys)


def test_when_no_file_can_be_written_the_shares_are_printed_rather_than_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _keys()
    where = rescue(keys, threshold=2, directory=tmp_path / "missing")
    assert where == "all 3 shares were printed on stdout (no file could be written)"
    printed = capsys.readouterr()
    assert "WARNING: the unseal shares could not be stored anywhere" in printed.err
    with parse_init_output(printed.out) as parsed:
        assert [share.hex() for share in parsed.shares] == keys
