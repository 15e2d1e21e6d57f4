"""The main scenario: a kv-v2 secret, a Deployment using it, a rotation, and quiet otherwise."""

from __future__ import annotations

from tests.syncd.e2e.world import SECRET_VALUE, World


async def test_sync_rotate_restart_once_then_quiet(world: World) -> None:
    await world.write_kv("kv-secret/info", {"SECRET_KEY": SECRET_VALUE})
    world.deployment("web", secret="app-secret")
    world.vss("app-secret", rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}])
    world.start_syncd()

    await world.eventually(lambda: world.secret_data("app-secret"), message="first sync")
    assert world.secret_data("app-secret")["SECRET_KEY"] == SECRET_VALUE  # type: ignore[index]
    await world.eventually(lambda: world.condition("app-secret", "Ready").get("status") == "True")
    first = world.get_vss("app-secret")["status"]  # type: ignore[index]
    assert first["sourceVersion"] == 1 and len(first["secretMAC"]) == 64
    assert world.restarts("web") == 0  # the first sync never restarts anything

    rotated = SECRET_VALUE + "-v2"
    assert await world.write_kv("kv-secret/info", {"SECRET_KEY": rotated}) == 2
    await world.eventually(
        lambda: (world.secret_data("app-secret") or {}).get("SECRET_KEY") == rotated,
        message="rotation synced",
    )
    await world.eventually(lambda: world.restarts("web") == 1, message="one restart")
    annotations = world.template_annotations("web")
    assert "secrets.vault-syncd.dev/restartedAt" in annotations
    status = world.get_vss("app-secret")["status"]  # type: ignore[index]
    assert status["sourceVersion"] == 2 and status["secretMAC"] != first["secretMAC"]
    assert status["secretMAC"] in annotations["secrets.vault-syncd.dev/fingerprints"]

    # Nothing changes now: several refreshes (1 s each) read Vault, write nothing, restart
    # nothing.
    # (The testbed counts a request once its reply is sent: let one refresh pass first.)
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() > reads, message="a refresh")
    writes = world.kube.requests.snapshot()
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 3, message="three refreshes")
    assert world.kube.requests.snapshot() == writes  # no Kubernetes request at all
    assert world.restarts("web") == 1
    await world.stop_syncd()
    assert SECRET_VALUE not in world.captured()
