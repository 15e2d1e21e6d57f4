"""Rollout restarts: which workloads, how many times, and what a paused Deployment gets."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.syncd.e2e.world import FINGERPRINTS, World


def _fingerprints(world: World, name: str, kind: str = "Deployment") -> dict[str, str]:
    return dict(json.loads(world.template_annotations(name, kind).get(FINGERPRINTS) or "{}"))


async def test_two_secrets_changed_together_restart_once(world: World) -> None:
    # Two rotations reach syncd at most one refresh (1 s plus jitter) apart; the debounce
    # window folds them into one restart.
    world.settings = dataclasses.replace(world.settings, debounce_seconds=1.5)
    await world.write_kv("kv-secret/db", {"password": world.value("db")})
    await world.write_kv("other/api", {"token": world.value("api")})
    world.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "app", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "envFrom": [
                {"secretRef": {"name": "db"}}, {"secretRef": {"name": "api"}}]}]}}},
    })
    target = [{"kind": "Deployment", "name": "web"}]
    world.vss("db", path="kv-secret/db", rolloutRestartTargets=target)
    world.vss("api", path="other/api", rolloutRestartTargets=target)
    world.start_syncd()
    await world.synced("db")
    await world.synced("api")
    macs = {n: world.status(n)["secretMAC"] for n in ("db", "api")}

    await world.write_kv("kv-secret/db", {"password": world.value("db2")})
    await world.write_kv("other/api", {"token": world.value("api2")})
    for name in ("db", "api"):
        await world.eventually(lambda name=name: world.status(name)["secretMAC"] != macs[name],
                               message=f"{name} rotated")
        await world.wait_condition(name, "RolloutRestart", status="True",
                                   reason="RolloutRestartTriggered")
    assert world.restarts("web") == 1
    assert _fingerprints(world, "web") == {n: world.status(n)["secretMAC"] for n in macs}
    # Later refreshes find nothing new: still one restart.
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 4, message="two refreshes")
    assert world.restarts("web") == 1


def _env_ref(secret: str) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": "nginx:1.27", "env": [{
        "name": "PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]}]}


def _volume(secret: str) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": "nginx:1.27",
                            "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}]}


def _projected(secret: str) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": "nginx:1.27",
                            "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
            "volumes": [{"name": "s", "projected": {"sources": [
                {"secret": {"name": secret}}]}}]}


async def test_targets_by_name_selector_and_auto(world: World) -> None:
    await world.write_kv("kv-secret/info", {"password": world.value("targets")})
    # auto: every workload whose pods use Secret "auto", whatever the way.
    world.workload("Deployment", "uses-env", pod_spec=_env_ref("auto"))
    world.workload("Deployment", "uses-envfrom", secret="auto")
    world.workload("StatefulSet", "uses-volume", pod_spec=_volume("auto"))
    world.workload("DaemonSet", "uses-projected", pod_spec=_projected("auto"))
    world.workload("Deployment", "unrelated", secret="something-else")
    # by selector, and by name, of each kind.
    world.workload("Deployment", "tier-web-1", labels={"tier": "web"})
    world.workload("Deployment", "tier-web-2", labels={"tier": "web"})
    world.workload("Deployment", "tier-db", labels={"tier": "db"})
    world.workload("StatefulSet", "db")
    world.workload("DaemonSet", "agent")
    world.vss("auto", rolloutRestartTargets=[{"auto": True}])
    world.vss("chosen", rolloutRestartTargets=[
        {"kind": "Deployment", "selector": {"matchLabels": {"tier": "web"}}},
        {"kind": "StatefulSet", "name": "db"},
        {"kind": "DaemonSet", "name": "agent"},
    ])
    world.start_syncd()
    await world.synced("auto")
    await world.synced("chosen")

    await world.write_kv("kv-secret/info", {"password": world.value("targets-rotated")})
    restarted = {
        ("Deployment", "uses-env"), ("Deployment", "uses-envfrom"),
        ("StatefulSet", "uses-volume"), ("DaemonSet", "uses-projected"),
        ("Deployment", "tier-web-1"), ("Deployment", "tier-web-2"),
        ("StatefulSet", "db"), ("DaemonSet", "agent"),
    }
    for name in ("auto", "chosen"):
        await world.wait_condition(name, "RolloutRestart", status="True",
                                   reason="RolloutRestartTriggered")
    await world.eventually(
        lambda: all(world.restarts(name, kind) == 1 for kind, name in restarted),
        message="every target restarted once")
    owner = {"uses-env": "auto", "uses-envfrom": "auto", "uses-volume": "auto",
             "uses-projected": "auto"}
    for kind, name in restarted:
        secret = owner.get(name, "chosen")
        assert _fingerprints(world, name, kind) == {secret: world.status(secret)["secretMAC"]}
    for kind, name in (("Deployment", "unrelated"), ("Deployment", "tier-db")):
        assert world.restarts(name, kind) == 0, name
        assert FINGERPRINTS not in world.template_annotations(name, kind)
    events = await world.eventually(
        lambda: world.events("RolloutRestartTriggered", about="chosen", type="Normal"))
    assert all("restarted" in e["message"] for e in events)
    message = world.condition("chosen", "RolloutRestart")["message"]
    assert all(name in message for _, name in restarted if name not in owner), message


async def test_paused_deployment_is_skipped_and_reported_once(world: World) -> None:
    """The paused Deployment is skipped and reported, even though the other target of the same
    rotation (restarted after it) succeeded: the condition sums up all of them."""
    await world.write_kv("kv-secret/info", {"password": world.value("paused")})
    world.workload("Deployment", "paused", secret="paused-secret", paused=True)
    world.workload("Deployment", "zz-running", secret="paused-secret")
    world.vss("paused-secret", rolloutRestartTargets=[{"kind": "Deployment", "name": "paused"},
                                                      {"kind": "Deployment", "name": "zz-running"}])
    world.start_syncd()
    await world.synced("paused-secret")

    await world.write_kv("kv-secret/info", {"password": world.value("paused-rotated")})
    await world.eventually(lambda: world.restarts("zz-running") == 1, message="the other one")
    await world.eventually(lambda: world.events("DeploymentPaused", about="paused-secret",
                                                type="Warning"))
    await world.eventually(lambda: world.events("RolloutRestartTriggered", about="paused-secret",
                                                type="Normal"))
    found = await world.wait_condition("paused-secret", "RolloutRestart", status="False",
                                       reason="DeploymentPaused")
    assert "app/paused is paused" in found["message"], found
    # Not an error loop: refreshes go on quietly, the Secret is synced, nothing is retried.
    assert world.condition("paused-secret", "Ready")["status"] == "True"
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 3, message="refreshes")
    assert world.restarts("paused") == 0
    assert len(world.events("DeploymentPaused", about="paused-secret")) == 1
    assert world.condition("paused-secret", "RolloutRestart")["reason"] == "DeploymentPaused"
    assert not world.logs.getvalue().count("job failed")
