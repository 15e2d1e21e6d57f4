"""Wrong shares, someone else's progress, unsafe custody, and what the unsealer reports."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
from pathlib import Path

import pytest
import yaml

from bench.unsealer_faults import write_private
from tests.unsealer.e2e.world import ENV_VARIABLE, World, custody_config
from unsealer.custody import InvariantError


def _corrupted(share: bytes) -> bytes:
    """The same x coordinate, different y bytes: well formed, wrong."""
    return bytes(b ^ 0x5A for b in share[:-1]) + share[-1:]


@pytest.mark.parametrize("wrong_key_status", [400, 500])
async def test_corrupt_share_is_named_and_the_others_unseal(
    world: World, monkeypatch: pytest.MonkeyPatch, wrong_key_status: int
) -> None:
    world.vault.admin.set_wrong_key_status(wrong_key_status)
    monkeypatch.setenv(ENV_VARIABLE, _corrupted(world.keys[4]).hex())
    # The Secret custodian answers last, so the first set of three holds the corrupt share.
    world.kube.faults.latency(0.3, resource="secrets", namespace="vault-custody")
    world.start_unsealer(dataclasses.replace(world.settings, poll_seconds=3600))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                           message="unsealed despite the corrupt share")
    logs = world.logs.getvalue()
    assert "wrong share set" in logs and "inconsistent shares" in logs
    assert '"custodians": ["dev"]' in logs  # the custodian holding the bad share, by name

    def unsealed_attempts() -> int:
        points = world.metric_points("unsealer.attempts")
        return sum(p.value for p in points if p.attributes["result"] == "Unsealed")

    # The attempt is counted just after Vault answers: wait for the count, not the seal.
    await world.eventually(lambda: unsealed_attempts() == 3, message="3 attempts counted")
    wrong = [p for p in world.metric_points("unsealer.attempts")
             if p.attributes["result"] == "WrongShares"]
    assert not wrong  # recovered within the attempt: no attempt ended on the wrong set


async def test_someone_elses_progress_is_reset_first(world: World) -> None:
    stranger = world.vault_client(0)
    foreign = secrets.token_bytes(32) + world.keys[0][-1:]  # well formed, from nobody's Vault
    reply = await asyncio.to_thread(stranger.sys.submit_unseal_key, key=foreign.hex())
    assert reply["progress"] == 1
    world.start_unsealer()
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    assert "resetting progress that is not ours" in world.logs.getvalue()
    assert not world.events("UnsealFailed")  # reset first, so the first attempt succeeded


async def test_custody_where_one_custodian_holds_the_threshold_is_refused(
    world: World, tmp_path: Path
) -> None:
    keys = world.keys
    write_private(world.share_file, "\n".join(k.hex() for k in keys[2:5]) + "\n")
    layout = custody_config(share_file=world.share_file)
    layout["custodians"][1]["shares"] = 3
    layout["custodians"] = layout["custodians"][:2]
    config = tmp_path / "unsafe.yaml"
    config.write_text(yaml.safe_dump(layout))
    task = world.start_unsealer(dataclasses.replace(world.settings, custody_config=str(config)))
    with pytest.raises(InvariantError) as refused:
        await asyncio.wait_for(task, 10)
    assert "disk" in str(refused.value)
    assert all(world.sealed(n) for n in range(3))
    world.tasks.remove(task)


async def test_one_trace_per_attempt_without_share_material(world: World) -> None:
    world.start_unsealer(dataclasses.replace(world.settings, poll_seconds=3600))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    await world.stop_unsealer()
    spans = world.spans.get_finished_spans()
    attempts = [s for s in spans if s.name == "unseal"]
    # One attempt unsealed each pod; a pod event arriving after that (Ready turning true, say)
    # may start another attempt, which must find the pod unsealed and send nothing.
    unsealing = [s for s in attempts if (s.attributes or {}).get("unsealer.outcome") == "Unsealed"]
    assert sorted((s.attributes or {})["k8s.pod.name"] for s in unsealing) == [
        "vault-0", "vault-1", "vault-2"]
    for attempt in attempts:
        trace_id = attempt.context.trace_id
        children = [s for s in spans if s.context.trace_id == trace_id and s is not attempt]
        names = sorted(s.name for s in children)
        assert all(s.parent is not None for s in children)
        if attempt in unsealing:
            assert names.count("vault.unseal.submit") == 3
            assert "custody.fetch" in names
        else:
            assert (attempt.attributes or {}).get("unsealer.outcome") == "AlreadyUnsealed"
            assert "vault.unseal.submit" not in names
    world.assert_no_share_leaked()
    for key in world.keys:
        assert base64.b64encode(key).decode() not in world.logs.getvalue()


async def test_an_unsealer_that_cannot_finish_leaves_progress_alone(world: World) -> None:
    someone = world.vault_client(0)
    reply = await asyncio.to_thread(someone.sys.submit_unseal_key, key=world.keys[0].hex())
    nonce = reply["nonce"]
    world.share_file.unlink()  # with kube-a down too, only 1 of 3 shares is reachable
    world.kube.faults.error(503, resource="secrets", namespace="vault-custody")
    world.start_unsealer(dataclasses.replace(world.settings, poll_seconds=3600))
    await world.eventually(lambda: world.events("UnsealFailed"), message="a clear failure")
    status = await asyncio.to_thread(someone.sys.read_seal_status)
    assert status["progress"] == 1 and status["nonce"] == nonce  # somebody's, untouched
    assert "resetting progress" not in world.logs.getvalue()


async def test_time_to_unseal_is_measured(world: World) -> None:
    world.start_unsealer(dataclasses.replace(world.settings, poll_seconds=3600))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))

    def recorded() -> list[object]:
        # Recorded just after Vault answers the last share: wait for all three.
        return [p for p in world.metric_points("unsealer.time_to_unseal") if p.count == 3]

    [histogram] = await world.eventually(recorded, message="three times to unseal recorded")
    assert histogram.sum > 0  # type: ignore[attr-defined]
