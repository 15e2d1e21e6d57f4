"""The TLS corpus (tests/corpus/tls/) as ``--ca-file``: one line naming the option and the file.

``unsealer custody verify`` and ``unsealer run`` are run as processes against the emulations
with each CA case as ``--ca-file``: exit status 2 and one error line that names ``--ca-file``
and the file, in words rather than OpenSSL's, quoting nothing of it, before anything is
read or asked (a custodian, Vault).
(The other uses of the corpus: tests/syncd/unit/test_corpus_tls.py.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

TLS = Path(__file__).resolve().parents[2] / "corpus" / "tls"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((TLS / "cases.yaml").read_text())
OPENSSL = re.compile(r"PEM lib|_ssl\.c|\[X509|\[SSL|Traceback")
#: Garbage and a truncated certificate (every case, as every material: the unit tests).
SAMPLE = ("garbage", "cert-truncated")


@pytest.mark.parametrize("command", [["custody", "verify"], ["run"]], ids=["verify", "run"])
async def test_a_broken_ca_file_is_one_line(world: Any, command: list[str]) -> None:
    assert set(SAMPLE) <= {n for n, c in CASES.items() if "ca" in c["as"]}
    keys = world.bootstrap(shares=5, threshold=3).keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": keys[4:5]})
    for node in world.vault.nodes:
        node.counter.reset()
    world.kube.requests.counts.clear()
    for name in SAMPLE:
        material = TLS / f"{name}.pem"
        run = await world.cli(*command, "--custody-config", str(world.custody_config()),
                              *world.pod_args(), "--ca-file", str(material))
        assert run.rc == 2, run
        line = run.error_line()
        assert f"--ca-file {material}" in line, line
        assert not OPENSSL.search(run.err), run.err
        for text in material.read_bytes().decode("latin-1").splitlines():
            if len(text) >= 16:
                assert text[:16] not in run.err + run.out
    # Refused before anything was read or asked: no custodian's Secret, no Vault request.
    assert sum(node.counter.count() for node in world.vault.nodes) == 0
    assert world.kube.requests.count("get", "secrets") == 0
