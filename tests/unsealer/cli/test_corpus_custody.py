"""The custody corpus (tests/corpus/custody/): each broken config refused in one line.

Every case is loaded as the unsealer loads it (:func:`unsealer.custody.config.load_config`):
it must be refused with a :class:`CustodyConfigError` of one line that names the file and the
field, and shows nothing the file held. Then ``unsealer custody verify``, ``init`` and ``run``
are run on a sample, as processes against the emulations: exit status 2, that one line, and
nothing else done (no request reached Vault or Kubernetes, no file written).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from unsealer.custody.config import CustodyConfigError, load_config

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "custody"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
#: One of each way to be wrong: a mode, garbage, truncated YAML (wrong types: the unit cases).
SAMPLE = ("share-file-world-readable", "garbage-binary", "truncated-in-a-list")


def test_every_file_has_its_case() -> None:
    files = {p.stem for p in CORPUS.glob("*.yaml")} - {"cases"}
    assert files == set(CASES)


def materialise(name: str, directory: Path) -> Path:
    """The case's config in ``directory`` with the files it names, in their modes."""
    case = CASES[name]
    for file, mode in (case.get("files") or {}).items():
        target = directory / file
        if mode == "dir":
            target.mkdir()
            continue
        target.write_bytes(b"\x01" * 33)
        target.chmod(int(str(mode), 8))
    config = directory / f"{name}.yaml"
    config.write_bytes((CORPUS / f"{name}.yaml").read_bytes().replace(
        b"{dir}", str(directory).encode()))
    return config


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_config_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    config = materialise(name, tmp_path)
    with pytest.raises(CustodyConfigError) as info:
        load_config(config, vault_namespace="vault", node="node-1")
    message = str(info.value)
    assert "\n" not in message and len(message) < 1024, message[:300]
    assert str(config) in message, message
    assert case["field"] in message, message
    assert case.get("says", "") in message, message
    for secret in case.get("never") or ():
        assert secret not in message


@pytest.mark.parametrize("command", ["verify", "init", "run"])
async def test_the_commands_refuse_it_and_do_nothing_else(world: Any, command: str) -> None:
    world.kube.requests.counts.clear()
    world.kube.requests.log.clear()
    for node in world.vault.nodes:
        node.counter.reset()
    for name in SAMPLE:
        directory = world.directory / f"{command}-{name}"
        directory.mkdir()
        config = materialise(name, directory)
        before = sorted(os.listdir(directory))
        args = {"verify": ["custody", "verify"], "init": ["init"], "run": ["run"]}[command]
        run = await world.cli(*args, "--custody-config", str(config), *world.pod_args())
        assert run.rc == 2, run
        line = run.error_line()
        assert str(config) in line and CASES[name]["field"] in line, line
        assert run.out == "", run
        assert sorted(os.listdir(directory)) == before
    # Nothing was asked of Kubernetes or Vault: the config is refused before any client exists.
    assert world.kube.requests.total == 0, list(world.kube.requests.log)
    assert sum(node.counter.count() for node in world.vault.nodes) == 0
