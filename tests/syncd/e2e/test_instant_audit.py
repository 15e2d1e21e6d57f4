"""Instant updates on Community Vault (``--instant-updates-source audit``): Vault's socket audit
device → ``syncd audit-relay`` (a real process, as the sidecar runs) → syncd.

A rotation arrives within 250 ms with one read; entries of other mounts, failed requests and
syncd's own reads schedule nothing; the relay killed leaves Vault's latency as it was and
syncd polls again; syncd killed leaves Vault unaffected (the relay drops); an entry lost is
caught by the safety poll; no secret value reaches the relay's output."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd.instant import InstantSettings
from tests.syncd.e2e.test_instant_events import INFO_READS, TARGET, rotate
from tests.syncd.e2e.world import ROOT, World

CLOCK_READS = "/v1/secret/data/other/clock"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Relay:
    world: World
    directory: Path
    port: int
    token: str
    output: Path = field(init=False)
    process: asyncio.subprocess.Process | None = None

    def __post_init__(self) -> None:
        self.output = self.directory / "relay.log"

    @property
    def socket(self) -> str:
        return str(self.directory / "relay.sock")

    async def start(self) -> None:
        token_file = self.directory / "token"
        token_file.write_text(self.token)
        with self.output.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "syncd", "audit-relay", "--listen", self.socket,
                "--syncd", f"127.0.0.1:{self.port}", "--token-file", str(token_file),
                "--vault-address", self.world.vault.address, "--log-format", "json",
                stdout=out, stderr=out, cwd=ROOT,
            )
        await self.world.eventually(lambda: "audit relay listening" in self.text(),
                                    message="relay listening")

    def text(self) -> str:
        return self.output.read_text() if self.output.exists() else ""

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None


@pytest.fixture
async def relay(world: World) -> AsyncIterator[Relay]:
    # A short directory: a unix socket path has at most 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="relay-", dir="/tmp"))
    made = Relay(world=world, directory=directory, port=_free_port(),
                 token=secrets.token_urlsafe(24))
    world.settings = dataclasses.replace(world.settings, instant_updates=InstantSettings(
        source="audit", safety_seconds=3600, relay_listen=f"127.0.0.1:{made.port}",
        relay_token=made.token))
    try:
        yield made
    finally:
        if made.process is not None:
            await made.kill()
        leaked = world.leaks([made.text()])
        assert not leaked, f"secret values in the relay's output: {leaked}"
        for path in directory.iterdir():
            path.unlink()
        os.rmdir(directory)


async def enable_devices(world: World, relay: Relay) -> None:
    """As the README says: a file device first, then the relay's socket, short timeout."""
    client = world.vault_client()
    await world.vault_call(client.sys.enable_audit_device, "file", path="file",
                           options={"file_path": str(relay.directory / "audit.log")})
    await world.vault_call(client.sys.enable_audit_device, "socket", path="relay", options={
        "address": relay.socket, "socket_type": "unix", "write_timeout": "250ms"})


async def write_latencies(world: World, count: int = 30) -> list[float]:
    """Seconds each of ``count`` unrelated KV writes takes (Vault's request latency)."""
    latencies = []
    for i in range(count):
        started = time.monotonic()
        await world.write_kv("unrelated/load", {"N": f"value-{i}"})
        latencies.append(time.monotonic() - started)
    return latencies


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def reads(world: World, path: str = INFO_READS) -> int:
    return world.vault.admin.request_count(method="GET", path=path)


async def start(world: World, relay: Relay, *, clock: bool = False) -> None:
    await world.write_kv("kv-secret/info", {"SECRET_KEY": world.value("first")})
    world.vss("instant", refreshAfter="1s", syncConfig={"instantUpdates": True})
    if clock:  # a polled object on another path: its reads (every second) are a clock
        await world.write_kv("other/clock", {"TICK": world.value("tick")})
        world.vss("clock", path="other/clock", refreshAfter="1s")
    world.start_syncd()
    await world.synced("instant")
    await relay.start()
    await world.eventually(lambda: "audit relay connected" in world.logs.getvalue(),
                           message="relay connected to syncd")
    await enable_devices(world, relay)


async def test_a_rotation_arrives_within_250ms_and_only_successful_kv_writes_count(
    world: World, relay: Relay
) -> None:
    await start(world, relay, clock=True)
    client = world.vault_client()
    await world.vault_call(client.sys.enable_secrets_engine, "kv", path="other-kv",
                           options={"version": "2"})
    before = reads(world)

    elapsed = [await rotate(world) for _ in range(3)]
    print(f"audit: rotation propagated in {', '.join(f'{e * 1000:.0f}' for e in elapsed)} ms")
    assert max(elapsed) < TARGET, elapsed

    # Schedules nothing: the same path on another mount, a refused write of the path itself
    # (its response entry has an error), reads of it (syncd's own among them).
    await world.vault_call(client.secrets.kv.v2.create_or_update_secret, path="kv-secret/info",
                           secret={"X": world.value("other-mount")}, mount_point="other-kv")
    refused = world.vault_client(world.vault_token())  # syncd's token: read only
    with pytest.raises(Exception, match="permission denied"):
        await world.vault_call(refused.secrets.kv.v2.create_or_update_secret,
                               path="kv-secret/info", secret={"SECRET_KEY": "nope-not-written"})
    await world.vault_call(client.secrets.kv.v2.read_secret_version, path="kv-secret/info",
                           raise_on_deleted_version=True)
    clock = reads(world, CLOCK_READS)
    await world.eventually(lambda: reads(world, CLOCK_READS) >= clock + 2, message="two polls")
    # One read per write, and none for the rest (nor any poll: the safety interval is 1 h);
    # the one more is the test's own read.
    assert reads(world) == before + 3 + 1


async def test_relay_killed_vault_latency_unaffected_and_syncd_polls_again(
    world: World, relay: Relay
) -> None:
    await start(world, relay)
    with_relay = await write_latencies(world)
    await relay.kill()
    await world.eventually(lambda: "audit relay gone" in world.logs.getvalue(),
                           message="syncd saw the relay go")
    without_relay = await write_latencies(world)
    print(f"vault write latency p50/p99 ms: relay up {statistics.median(with_relay) * 1000:.1f}"
          f"/{p99(with_relay) * 1000:.1f}, relay killed "
          f"{statistics.median(without_relay) * 1000:.1f}/{p99(without_relay) * 1000:.1f}")
    # A unix socket with nobody listening refuses at once: no request waits for the 250 ms
    # write timeout, and the file device keeps Vault answering.
    assert p99(without_relay) < 0.1, without_relay
    polled = await rotate(world)  # by polling, every refreshAfter (1 s), again
    print(f"relay killed: rotation propagated by polling in {polled * 1000:.0f} ms")
    assert polled < 3.0


async def test_syncd_killed_the_relay_drops_and_vault_is_unaffected(
    world: World, relay: Relay
) -> None:
    await start(world, relay)
    with_syncd = await write_latencies(world, 20)
    await world.stop_syncd()
    await world.eventually(lambda: "dropping notices" in relay.text(), message="relay drops")
    without_syncd = await write_latencies(world, 20)
    print(f"vault write latency p99 ms: syncd up {p99(with_syncd) * 1000:.1f}, syncd gone "
          f"{p99(without_syncd) * 1000:.1f}")
    assert p99(without_syncd) < 0.1, without_syncd
    assert relay.process is not None and relay.process.returncode is None  # still serving


async def test_a_lost_entry_is_caught_by_the_safety_poll(world: World, relay: Relay) -> None:
    world.settings = dataclasses.replace(world.settings, instant_updates=dataclasses.replace(
        world.settings.instant_updates, safety_seconds=2))
    await start(world, relay)
    assert await rotate(world) < TARGET
    client = world.vault_client()
    await world.vault_call(client.sys.disable_audit_device, "relay")  # entries lost from here
    lost = await rotate(world)
    print(f"entry lost: rotation caught by the safety poll in {lost * 1000:.0f} ms")
    assert TARGET < lost < 5.0


async def test_syncd_refuses_notices_without_the_relay_token(world: World, relay: Relay) -> None:
    """Someone who can reach syncd's relay port but has no token schedules nothing."""
    await start(world, relay)
    before = reads(world)
    notice = b'{"mount":"secret","path":"data/kv-secret/info","version":99}\n'
    for hello in (b'{"token":"guessed","vault":"%s"}\n' % world.vault.address.encode(),
                  notice, b"\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(hello + notice * 50)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, never "ok"
        writer.close()
    assert await rotate(world) < TARGET  # a genuine notice is still served...
    assert reads(world) == before + 1  # ...and was the only one that caused a read
    assert world.logs.getvalue().count("audit relay refused") == 3


async def test_a_restarted_relay_gets_entries_again_without_touching_vault(
    world: World, relay: Relay
) -> None:
    """Vault keeps its socket device's connection; when the relay restarts, the next write on
    the old connection fails, and Vault redials once and writes again (sink_socket.go): the
    entry that found the relay gone is not lost, and no device needs enabling again."""
    await start(world, relay)
    assert await rotate(world) < TARGET
    await relay.kill()
    await relay.start()  # the same socket path: the killed relay's file is replaced
    await world.eventually(lambda: relay.text().count("connected to syncd") >= 2,
                           message="the new relay connected to syncd")
    again = await rotate(world)
    print(f"relay restarted: rotation propagated in {again * 1000:.0f} ms")
    assert again < TARGET
