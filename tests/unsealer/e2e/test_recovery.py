"""Hands-off recovery: restarts, new pods, power loss, self-seal, unreachable custodians."""

from __future__ import annotations

import dataclasses

from tests.unsealer.e2e.world import VAULT_NS, World


async def test_all_raft_pods_unsealed_at_start(world: World) -> None:
    assert all(world.sealed(n) for n in range(3))
    world.start_unsealer()
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                           message="vault-0..2 unsealed")
    await world.eventually(lambda: len(world.events("Unsealed")) == 3)


async def test_container_restart_is_unsealed(world: World) -> None:
    # No poll in this test: only the pod watch (restartCount went up) can notice.
    world.start_unsealer(dataclasses.replace(world.settings, poll_seconds=3600))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    await world.restart_vault(0)
    assert world.sealed(0)
    await world.eventually(lambda: not world.sealed(0), message="vault-0 unsealed again")


async def test_deleted_pod_with_a_new_ip_is_unsealed(world: World) -> None:
    # No poll in this test: only the pod watch (a new pod, a new IP) can notice.
    world.start_unsealer(dataclasses.replace(world.settings, poll_seconds=3600))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    # vault-0 is rescheduled: its replacement, a new Vault process (sealed), answers at a new
    # address, with its own certificate (vault-0's names).
    world.pods.reschedule("vault-0", "127.0.0.5")
    await world.eventually(
        lambda: (world.kube.admin.get("v1", "Pod", "vault-0", VAULT_NS) or {})
        .get("status", {}).get("podIP") == "127.0.0.5",
        message="vault-0 recreated at 127.0.0.5",
    )
    await world.eventually(lambda: world.vault.nodes[0].host == "127.0.0.5",
                           message="vault-0's Vault listening at 127.0.0.5")
    assert world.vault.nodes[0].restarts >= 1  # a new Vault process: it came up sealed

    await world.eventually(
        lambda: not world.sealed(0) and any(
            s.name == "unseal" and (s.attributes or {}).get("vault.address", "").startswith(
                "https://127.0.0.5:") and (s.attributes or {}).get("unsealer.outcome") == "Unsealed"
            for s in world.spans.get_finished_spans()),
        message="unsealed at the new IP")


async def test_power_loss_of_everything(world: World) -> None:
    world.start_unsealer()
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    await world.stop_unsealer()
    assert world.pods.power_cut() == 3
    assert all(world.sealed(n) for n in range(3))
    world.start_unsealer()  # the unsealer comes back too, with no memory of before
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                           message="every raft pod unsealed after power loss")


async def test_self_seal_without_restart_is_caught_by_the_poll(world: World) -> None:
    world.start_unsealer()
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    world.vault.admin.seal(2)  # no pod change at all: only the seal-status poll can notice
    assert world.sealed(2)
    await world.eventually(lambda: not world.sealed(2), message="unsealed by the poll")


async def test_one_custodian_down_the_others_suffice(world: World) -> None:
    world.kube.faults.error(503, resource="secrets", namespace="vault-custody")
    world.start_unsealer()
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    # The Event is posted just after Vault answers: wait for all three.
    unsealed = await world.eventually(lambda: len(world.events("Unsealed")) == 3
                                      and world.events("Unsealed"))
    for event in unsealed:
        # "vault-N unsealed with shares from A, B[; unreachable custodians: kube-a]": kube-a's
        # failure is named when it came in before the threshold was met, never as a source.
        used, _, rest = event["message"].partition(";")
        assert "shares from" in used and "kube-a" not in used, event["message"]
        assert rest in ("", " unreachable custodians: kube-a"), event["message"]


async def test_fewer_than_threshold_retries_with_backoff_then_recovers(
    world: World,
) -> None:
    world.share_file.unlink()  # "disk" gone: 3 of 5 shares remain... minus one more below
    world.kube.faults.error(503, resource="secrets", namespace="vault-custody")
    world.start_unsealer()
    await world.eventually(lambda: world.events("UnsealFailed"), message="a clear failure")
    failure = world.events("UnsealFailed")[0]["message"]
    assert "1 of the 3 shares" in failure and "kube-a" in failure and "disk" in failure
    # No hot loop: over a few seconds of failing, few attempts (backoff 0.5 s, doubling, capped
    # at 1 s here... so about one a second per pod, never hundreds).
    before = world.vault.admin.request_count(method="GET", path="/v1/sys/seal-status")
    await world.eventually(
        lambda: world.vault.admin.request_count(method="GET", path="/v1/sys/seal-status")
        >= before + 6, message="a few retries",
    )
    assert all(world.sealed(n) for n in range(3))
    world.kube.faults.clear()  # kube-a is back: 2 + 1 = 3 shares
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)),
                           message="unsealed once enough custodians answer")
