"""Malformed resources are isolated: each is told what is wrong, the others keep syncing.

Whatever the CRD schema can refuse, the API server refuses at admission (asserted here too);
what gets through — a regular expression that does not compile, a refresh shorter than syncd
accepts, a VaultAuth that does not exist, an object stored before the CRD's enum was tightened —
is caught by syncd, reported on the Ready condition with the field's path and in a Warning
Event, and never stops the good VaultStaticSecret next to it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from testbed.kube.errors import ApiError
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, ROOT, World

CRD_PATH = ROOT / "manifests" / "crds" / "vaultstaticsecrets.yaml"


def _vss_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
        "metadata": {"name": name, "namespace": APP_NS},
        "spec": {"mount": "secret", "path": "kv-secret/info", "type": "kv-v2",
                 "refreshAfter": "1s", "destination": {"name": name, "create": True}, **spec},
    }


def _admit_without_kind_enum(world: World, obj: dict[str, Any]) -> None:
    """Store ``obj`` as a cluster would hold it from before the CRD's kind enum: apply a CRD
    without the enum, create the object, and put the real CRD back (stored objects are not
    validated again)."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    loose = copy.deepcopy(crd)
    schema = loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    target = schema["properties"]["spec"]["properties"]["rolloutRestartTargets"]["items"]
    del target["properties"]["kind"]["enum"]
    world.apply(loose)
    try:
        world.apply(obj)
    finally:
        world.apply(crd)


async def test_malformed_resources_are_isolated(world: World) -> None:
    value = world.value("good")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("good")

    # What the CRD schema refuses never reaches syncd.
    with pytest.raises(ApiError) as refused:
        world.apply(_vss_body("not-a-duration", refreshAfter="soon"))
    assert refused.value.code == 422 and "spec.refreshAfter" in refused.value.message
    with pytest.raises(ApiError) as refused:
        world.apply(_vss_body("cronjob", rolloutRestartTargets=[
            {"kind": "CronJob", "name": "nightly"}]))
    assert refused.value.code == 422
    assert "spec.rolloutRestartTargets[0].kind" in refused.value.message

    # What it lets through, syncd reports.
    world.apply(_vss_body("bad-regex", destination={
        "name": "bad-regex", "create": True,
        "transformation": {"includes": ["^pass(word"]}}))
    world.apply(_vss_body("bad-refresh", refreshAfter="0.5s"))  # fits the CRD's pattern
    world.apply(_vss_body("no-auth", vaultAuthRef="nope"))
    _admit_without_kind_enum(world, _vss_body("bad-kind", rolloutRestartTargets=[
        {"kind": "CronJob", "name": "nightly"}]))
    world.start_syncd()

    expected = {
        "bad-regex": ("InvalidSpec", "spec.destination.transformation.includes[0]"),
        "bad-refresh": ("InvalidSpec", "spec.refreshAfter"),
        "no-auth": ("VaultAuthNotFound", "spec.vaultAuthRef"),
        "bad-kind": ("InvalidSpec", "spec.rolloutRestartTargets[0].kind"),
    }
    for name, (reason, field) in expected.items():
        if name != "bad-kind":
            found = await world.wait_condition(name, "Ready", status="False", reason=reason)
            assert field in found["message"], (name, found)
        events = await world.eventually(
            lambda name=name, reason=reason: world.events(reason, about=name, type="Warning"),
            message=f"a Warning Event about {name}",
        )
        assert field in events[0]["message"]
        assert world.secret(name) is None
    assert "is too short" in world.condition("bad-refresh", "Ready")["message"]
    # The status of "bad-kind" cannot be written: the testbed validates the whole object on a
    # status write and has no validation ratcheting (Kubernetes < 1.30 behaves the same), so
    # the Warning Event is where the problem is told.
    assert "CronJob" in world.events("InvalidSpec", about="bad-kind")[0]["message"]

    # The good one synced, and keeps syncing while the others fail again and again.
    assert await world.synced("good") == {
        "password": value, "_raw": (world.secret_data("good") or {})["_raw"]}
    rotated = world.value("rotated")
    await world.write_kv("kv-secret/info", {"password": rotated})
    await world.eventually(lambda: (world.secret_data("good") or {}).get("password") == rotated,
                           message="the good secret follows a rotation")

    # A failing object is reported once, not in a loop of identical Events.
    for name, (reason, _) in expected.items():
        assert len(world.events(reason, about=name)) == 1, name

    # Fixing an object is enough: it syncs at once.
    world.apply(_vss_body("bad-regex", destination={
        "name": "bad-regex", "create": True,
        "transformation": {"includes": ["^pass(word)?$"], "excludeRaw": True}}))
    assert await world.synced("bad-regex") == {"password": rotated}


async def test_settings_without_effect_are_reported(world: World) -> None:
    value = world.value("warned")
    await world.write_kv("kv-secret/info", {"password": value})
    world.apply({"apiVersion": "v1", "kind": "Secret", "data": {},
                 "metadata": {"name": "theirs", "namespace": APP_NS, "annotations": {
                     "secrets.vault-syncd.dev/destination-of": "theirs"}}})
    world.apply(_vss_body("theirs", destination={
        "name": "theirs", "create": False, "labels": {"team": "a"}}))
    world.start_syncd()
    await world.eventually(lambda: world.secret_data("theirs") == {
        "password": value, "_raw": world.secret_data("theirs", ).get("_raw", "")}
        if world.secret_data("theirs") else False, message="synced into their Secret")
    [event] = await world.eventually(lambda: world.events("IneffectiveSettings"))
    assert event["type"] == "Warning" and "create: true" in event["message"]
