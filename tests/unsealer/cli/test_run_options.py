"""``unsealer run``: every field of Settings has a flag and an UNSEALER_* variable."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from unsealer.cli import build_parser, settings_from
from unsealer.commands.runner import CommandError
from unsealer.notifications import Target
from unsealer.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
KEY_HEX = "00112233445566778899aabbccddeeff0011"

#: One non-default value per Settings field, as a flag and as the value it must become.
FLAGS: dict[str, tuple[list[str], Any]] = {
    "custody_config": (["--custody-config", "/etc/unsealer/custody.yaml"],
                       "/etc/unsealer/custody.yaml"),
    "kubeconfig": (["--kubeconfig", "/home/me/.kube/pi"], "/home/me/.kube/pi"),
    "namespace": (["--namespace", "hashicorp"], "hashicorp"),
    "selector": (["--selector", "app=vault"], "app=vault"),
    "address_template": (["--address-template", "https://{pod}.vault-internal:8200"],
                         "https://{pod}.vault-internal:8200"),
    "ca_file": (["--ca-file", "/etc/vault/ca.pem"], "/etc/vault/ca.pem"),
    "poll_seconds": (["--poll-interval", "1m30s"], 90.0),
    "backoff_max_seconds": (["--backoff-max", "2m"], 120.0),
    "grace_seconds": (["--shutdown-grace", "4.5s"], 4.5),
    "fingerprint_key": (["--fingerprint-key", KEY_HEX], bytes.fromhex(KEY_HEX)),
    "allow_unsafe_custody": (["--allow-unsafe-custody"], True),
    "peer_only": (["--peer-only"], True),
    "max_retry_subsets": (["--max-retry-subsets", "0"], 0),
    "statefulset": (["--statefulset", "vault-ha"], "vault-ha"),
    "server_name_template": (["--server-name", "{pod}.{service}"], "{pod}.{service}"),
    "allow_plain_http": (["--allow-plain-http"], True),
    "share_attempt_budget": (["--share-attempt-budget", "2"], 2),
    "share_budget_seconds": (["--share-budget-window", "10m"], 600.0),
    "health_address": (["--health-address", "127.0.0.1:9090"], "127.0.0.1:9090"),
    "notify": (["--notify", "https://hooks.example/a,slack:https://chat.example/hooks/b"],
               (Target(url="https://hooks.example/a"),
                Target(url="https://chat.example/hooks/b", slack=True))),
}


def _env_name(flag: str) -> str:
    return "UNSEALER_" + flag.lstrip("-").upper().replace("-", "_")


def test_every_settings_field_has_a_flag() -> None:
    assert set(FLAGS) == {field.name for field in dataclasses.fields(Settings)}
    argv = ["run", *(part for flags, _ in FLAGS.values() for part in flags)]
    settings = settings_from(build_parser().parse_args(argv))
    assert settings == Settings(**{name: value for name, (_, value) in FLAGS.items()})
    for field in dataclasses.fields(Settings):
        if field.default is not dataclasses.MISSING:
            assert getattr(settings, field.name) != field.default, field.name


def test_every_settings_field_has_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for flags, _ in FLAGS.values():
        monkeypatch.setenv(_env_name(flags[0]), "true" if len(flags) == 1 else flags[1])
    settings = settings_from(build_parser().parse_args(["run"]))
    assert settings == Settings(**{name: value for name, (_, value) in FLAGS.items()})


def test_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNSEALER_CUSTODY_CONFIG", "custody.yaml")
    # The one difference: the CLI serves /healthz, /readyz and /metrics by default (a process
    # in a pod), Settings() serves none (the tests run several unsealers in one process).
    assert settings_from(build_parser().parse_args(["run"])) == Settings(
        custody_config="custody.yaml", health_address="0.0.0.0:8080")


def test_a_custody_config_is_required() -> None:
    with pytest.raises(CommandError) as error:
        settings_from(build_parser().parse_args(["run"]))
    assert error.value.code == 2
    assert str(error.value) == "--custody-config (env UNSEALER_CUSTODY_CONFIG) is required"


def test_plain_http_needs_to_be_allowed_by_name() -> None:
    argv = ["run", "--custody-config", "c.yaml", "--address-template", "http://{ip}:8200"]
    with pytest.raises(CommandError) as error:
        settings_from(build_parser().parse_args(argv))
    assert error.value.code == 2
    assert str(error.value).startswith("--address-template http://{ip}:8200: plain http")
    assert "--allow-plain-http" in str(error.value)
    allowed = settings_from(build_parser().parse_args([*argv, "--allow-plain-http"]))
    assert allowed.allow_plain_http and allowed.address_template == "http://{ip}:8200"


@pytest.mark.parametrize(("argv", "message"), [
    (["--fingerprint-key", "00112233"],
     "argument --fingerprint-key: 4 bytes is too short: at least 16 bytes (32 hex digits)"),
    (["--fingerprint-key", "zz" * 16], "argument --fingerprint-key: not hex"),
    (["--poll-interval", "30"], "argument --poll-interval: invalid duration '30'"),
    (["--backoff-max", "0s"], "argument --backoff-max: duration '0s' must be longer than 0s"),
    (["--address-template", "http://{host}:8200"],
     "argument --address-template: invalid template 'http://{host}:8200'"),
    (["--max-retry-subsets", "-1"], "argument --max-retry-subsets: must be at least 0"),
    (["--server-name", "{pod}.{svc}"], "argument --server-name: invalid template '{pod}.{svc}'"),
])
def test_bad_values_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"unsealer run: error: {message}")
    if "fingerprint" in message:
        assert argv[1] not in err  # a key is never repeated back


def test_a_bad_fingerprint_key_variable_is_named_and_not_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UNSEALER_FINGERPRINT_KEY", "ab" * 8 + "x")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run"])
    err = capsys.readouterr().err
    assert "UNSEALER_FINGERPRINT_KEY (for --fingerprint-key): not hex" in err
    assert "ab" * 8 not in err


def test_help_says_unsafe_custody_is_for_development(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--allow-unsafe-custody DEVELOPMENT ONLY" in help_text
    for flags, _ in FLAGS.values():
        assert flags[0] in help_text and _env_name(flags[0]) in help_text


async def test_run_without_custody_config_is_one_line(world: Any) -> None:
    run = await world.cli("run", "--kubeconfig", str(world.kubeconfig))
    assert run.rc == 2
    assert run.err_lines == [
        "unsealer run: error: --custody-config (env UNSEALER_CUSTODY_CONFIG) is required"]


async def test_run_with_an_unusable_kubeconfig_is_one_line(world: Any) -> None:
    # Was exit 1, "unexpected KubeConfigError". The parser's own text would quote the line,
    # which here holds a token.
    broken = world.workdir / "broken.kubeconfig"
    broken.write_text('apiVersion: v1\nusers:\n- name: me\n  user: {token: "tok-53cr3t"\n')
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": [keys[4]]})
    run = await world.cli("run", "--kubeconfig", str(broken), "--custody-config",
                          str(world.custody_config()), "--health-address", "")
    assert run.rc == 2, run
    assert run.err_lines == [f"unsealer run: error: {broken}: not YAML (line 5, column 1)"]
    assert "tok-53cr3t" not in run.err + run.out


async def test_run_with_its_health_port_taken_says_so(world: Any) -> None:
    # Was "unexpected OSError": two unsealers on one node both on the default 0.0.0.0:8080.
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": [keys[4]]})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await world.cli("run", "--custody-config", str(world.custody_config()),
                              *world.pod_args(), "--allow-plain-http",
                              "--health-address", f"127.0.0.1:{port}")
    assert run.rc == 1, run
    line = run.error_line()
    assert f"('127.0.0.1', {port})" in line and "address already in use" in line, line


def test_the_unsealer_does_not_load_the_typed_kubernetes_client() -> None:
    """kubernetes-asyncio's package (its generated models) is 35 MiB of an idle unsealer's
    85 MiB RSS; plumbing.kubeconfig imports it only for credential plugins."""
    code = ("import sys, unsealer.cli, unsealer.service, unsealer.commands.runner;"
            " print(sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio')))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=ROOT)
    assert found.stdout.strip() == "[]"


async def test_run_refuses_unsafe_custody_in_one_line(world: Any) -> None:
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[:3], "kube-b": [keys[3]], "disk": [keys[4]]})
    config = world.custody_config(counts={"kube-a": 3, "kube-b": 1, "disk": 1})
    run = await world.cli("run", "--custody-config", str(config), *world.pod_args(),
                          "--allow-plain-http")
    assert run.rc == 2, run
    assert run.err_lines == [  # one line, before any log line
        "unsealer run: error: split custody does not hold: place namespace/vault-custody "
        "(kube-a) alone yields 3 shares, and the threshold is 3"]


async def test_run_serves_with_the_settings_and_stops_on_sigterm(world: Any) -> None:
    """The settings reach unsealer.service.run: it unseals a sealed pod, then stops cleanly."""
    keys = world.bootstrap().keys
    world.place({"kube-a": keys[0:2], "kube-b": keys[2:4], "disk": [keys[4], keys[0]]})
    world.vault.admin.seal(1)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "unsealer", "run", "--custody-config",
        str(world.custody_config()), *world.pod_args(), "--allow-plain-http",
        "--poll-interval", "1s", "--health-address", "127.0.0.1:0",  # 8080 may be taken
        stderr=asyncio.subprocess.PIPE, env=world.environment(), cwd=world.workdir)
    assert process.stderr is not None
    lines: list[dict[str, Any]] = []
    seen = ""
    try:
        while not any(line.get("event") == "ready" for line in lines):
            raw = await asyncio.wait_for(process.stderr.readline(), 30)
            assert raw, f"unsealer run ended early: {seen}"
            seen += raw.decode()
            lines.append(json.loads(raw))
        await world.kube.wait_for(
            lambda: not world.vault.nodes[1].sealed, timeout=30,
            message="vault-1 was not unsealed")
        process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    world.record(("run",), code, out="", err=seen + rest)  # checked for leaks like the rest
    assert code == 0
    events = [json.loads(line)["event"] for line in rest.splitlines() if line.strip()]
    assert events[-1] == "stopped"


def test_a_bad_notify_url_is_named_by_position_not_by_its_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "ftp://hooks.example/T000/B000/XXXXsecretXXXX"
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "--notify", f"https://ok.example/x,{secret}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--notify: entry 2 is not an http(s) URL" in err
    assert "secret" not in err
