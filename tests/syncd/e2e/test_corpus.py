"""The resource corpus end to end: a sample per kind, against the real services.

tests/syncd/unit/test_corpus_resources.py runs every case of tests/corpus/resources/ through the
CRD schema and syncd's parsing. Here a sample shows the rest of the path with syncd running:
what the schema refuses, ``kubectl apply --validate=strict`` is refused naming the field; what
it lets through gets, on the object that is or uses it, a Ready=False condition and one Warning
Event naming the object and the field; the destination Secret, already there, keeps its data;
and a good VaultStaticSecret beside them keeps syncing.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from tests.corpus.cases import RESOURCES, ResourceCase, resource_case
from tests.syncd.e2e.kubectl import kubectl_apply
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

#: Per kind, a case syncd must refuse (not about the destination: that one is kept here).
SYNCD_SAMPLE = ("VaultConnection/headers-vault-token", "VaultAuth/mount-dotdot",
                "VaultAuthGlobal/kubernetes-mount-dotdot", "SecretTransformation/template-go-env",
                "VaultStaticSecret/path-dotdot", "VaultDynamicSecret/path-dotdot",
                "VaultPKISecret/role-slash")
SCHEMA_SAMPLE = ("VaultStaticSecret/type-unknown", "VaultDynamicSecret/renewalPercent-over",
                 "VaultPKISecret/format-unknown", "VaultAuth/unknown-field",
                 "VaultConnection/timeout-word", "SecretTransformation/includes-number",
                 "VaultAuthGlobal/tokenExpiration-low")
KEPT = {"keep": "the data before"}


def _case(case_id: str) -> ResourceCase:
    kind, name = case_id.split("/")
    return resource_case(RESOURCES / kind / f"{name}.yaml")


def _secret(name: str, owner: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": APP_NS,
                         "annotations": {"secrets.vault-syncd.dev/destination-of": owner}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in KEPT.items()}}


def _writer(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    """A VaultStaticSecret ``name`` (reading what the good one reads), writing Secret ``name``."""
    return {"apiVersion": GROUP_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": APP_NS},
            "spec": {"mount": "secret", "path": "kv-secret/info", "type": "kv-v2",
                     "refreshAfter": "1s", **spec,
                     "destination": {"name": name, "create": True, "overwrite": True,
                                     **spec.get("destination", {})}}}


def _place(world: World, case: ResourceCase) -> tuple[str, str]:
    """Apply ``case`` and what makes syncd read it; the (kind, name) whose condition tells."""
    obj = case.resource
    name = f"uses-{case.kind.lower()}"
    if case.kind in ("VaultStaticSecret", "VaultDynamicSecret", "VaultPKISecret"):
        name = obj["metadata"]["name"] + "-" + case.kind.lower()
        obj = {**obj, "metadata": {**obj["metadata"], "name": name},
               "spec": {**obj["spec"], "destination": {
                   **obj["spec"]["destination"], "name": name, "overwrite": True}}}
        world.apply(_secret(name, name))
        world.apply(obj)
        return case.kind, name
    world.apply(_secret(name, name))
    world.apply(obj)
    ref = obj["metadata"]["name"]
    token = {"method": "token", "token": {"secretRef": {"name": "vault-token"}}}
    if case.kind == "VaultConnection":
        world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                     "metadata": {"name": name, "namespace": APP_NS},
                     "spec": {**token, "vaultConnectionRef": ref}})
        world.apply(_writer("VaultStaticSecret", name, vaultAuthRef=name))
    elif case.kind == "VaultAuth":
        world.apply(_writer("VaultStaticSecret", name, vaultAuthRef=ref))
    elif case.kind == "VaultAuthGlobal":
        world.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                     "metadata": {"name": name, "namespace": APP_NS},
                     "spec": {"vaultAuthGlobalRef": {"name": ref}}})
        world.apply(_writer("VaultStaticSecret", name, vaultAuthRef=name))
    else:
        world.apply(_writer("VaultStaticSecret", name, destination={
            "transformation": {"transformationRefs": [{"name": ref}]}}))
    return "VaultStaticSecret", name


async def _kubectl_refusal(world: World, text: str) -> str:
    """kubectl's complaints about applying ``text``, which it must refuse."""
    with pytest.raises(AssertionError) as refused:  # kubectl_apply asserts its exit status 0
        await kubectl_apply(world, text)
    return str(refused.value)


async def test_a_sample_of_the_corpus_end_to_end(world: World) -> None:
    # What the schema refuses, kubectl is told, field by field; nothing is stored.
    schema_cases = [_case(c) for c in SCHEMA_SAMPLE]
    err = await _kubectl_refusal(world, "---\n".join(
        yaml.safe_dump(c.resource) for c in schema_cases))
    for case in schema_cases:
        meta = case.resource["metadata"]
        [line] = [line for line in err.splitlines() if case.field in line]
        assert case.says in line, (case.id, line)
        assert world.kube.admin.get(GROUP_VERSION, case.kind, meta["name"], APP_NS) is None

    # What it lets through, syncd refuses, object by object, beside a good one.
    value = world.value("good")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("good")
    placed = {c: _place(world, _case(c)) for c in SYNCD_SAMPLE}
    world.start_syncd()
    assert (await world.synced("good"))["password"] == value

    for case_id, (kind, name) in placed.items():
        case = _case(case_id)
        meta = case.resource["metadata"]

        def failed(kind: str = kind, name: str = name, reason: str = case.reason) -> Any:
            obj = world.kube.admin.get(GROUP_VERSION, kind, name, APP_NS) or {}
            return next((c for c in (obj.get("status") or {}).get("conditions") or []
                         if c["type"] == "Ready" and c["status"] == "False"
                         and c["reason"] == reason), None)

        condition = await world.eventually(failed, message=f"{case_id}: Ready=False")
        events = await world.eventually(
            lambda name=name, reason=case.reason: world.events(reason, about=name,
                                                                type="Warning"),
            message=f"{case_id}: a Warning Event")
        for text in (condition["message"], events[0]["message"]):
            assert case.field in text and case.says in text, (case_id, text)
            if case.kind not in ("VaultStaticSecret", "VaultDynamicSecret", "VaultPKISecret"):
                assert f"{case.kind} {APP_NS}/{meta['name']}" in text, (case_id, text)
        assert world.secret_data(name) == KEPT, case_id

    # The good one follows a rotation while the others fail; each failure was told once.
    rotated = world.value("rotated")
    await world.write_kv("kv-secret/info", {"password": rotated})
    await world.eventually(lambda: (world.secret_data("good") or {}).get("password") == rotated,
                           message="the good secret follows a rotation")
    for case_id, (_, name) in placed.items():
        assert len(world.events(_case(case_id).reason, about=name)) == 1, case_id
        assert world.secret_data(name) == KEPT, case_id
