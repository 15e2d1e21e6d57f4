"""The destination Secret: whose it is, what syncd may change in it, and when it goes away.

- ``create: false``: the Secret is someone else's, opted in by an annotation; only its data is
  written. A missing one is a clear condition, and is written once it exists. (What is refused:
  test_destination_ownership.py.)
- ``create: true`` and a Secret that is not syncd's: left alone unless ``overwrite: true``.
- A change of ``destination.type`` recreates the Secret (the type is immutable).
- ``deletionPolicy: Delete`` sets an ownerReference, so the cluster's garbage collector deletes
  the Secret with its VaultStaticSecret; ``Retain`` leaves it.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

MANAGED_BY = "app.kubernetes.io/managed-by"
DESTINATION_OF = "secrets.vault-syncd.dev/destination-of"


def _secret(name: str, *, data: dict[str, str], labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": APP_NS, "labels": labels or {},
                     "annotations": annotations or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def test_secrets_syncd_does_not_own(world: World) -> None:
    value = world.value("owned-by-others")
    await world.write_kv("kv-secret/info", {"password": value})
    plain = {"name": "x", "create": False, "transformation": {"excludeRaw": True}}
    world.apply(_secret("external", data={"password": "placeholder"},
                        labels={"team": "payments"},
                        annotations={"note": "hand-made", DESTINATION_OF: "external"}))
    world.vss("external", destination={**plain, "name": "external"})
    world.vss("not-yet", destination={**plain, "name": "not-yet"})
    world.apply(_secret("taken", data={"password": "keep-me"}, labels={"team": "payments"}))
    world.vss("takeover", destination={"name": "taken", "create": True})
    world.start_syncd()

    # create: false writes the data, and nothing else.
    assert await world.synced("external") == {"password": value}
    external = world.secret("external") or {}
    assert external["metadata"]["labels"] == {"team": "payments"}
    assert external["metadata"]["annotations"] == {"note": "hand-made",
                                                   DESTINATION_OF: "external"}
    assert not external["metadata"].get("ownerReferences")

    # create: false and no Secret: said clearly, and written once the Secret exists.
    found = await world.wait_condition("not-yet", "Ready", status="False",
                                       reason="DestinationError")
    assert "Secret app/not-yet does not exist" in found["message"]
    assert "spec.destination.create" in found["message"]
    await world.eventually(lambda: world.events("DestinationError", about="not-yet",
                                                type="Warning"))
    assert f"annotated {DESTINATION_OF}: not-yet" in found["message"]
    world.apply(_secret("not-yet", data={"password": "placeholder"},
                        annotations={DESTINATION_OF: "not-yet"}))
    assert await world.synced("not-yet") == {"password": value}
    assert MANAGED_BY not in (world.secret("not-yet") or {})["metadata"].get("labels", {})

    # create: true meets a Secret that is not syncd's: left alone...
    found = await world.wait_condition("takeover", "Ready", status="False",
                                       reason="DestinationError")
    assert "spec.destination.overwrite" in found["message"]
    assert world.secret_data("taken") == {"password": "keep-me"}
    assert MANAGED_BY not in (world.secret("taken") or {})["metadata"]["labels"]
    # ...unless overwrite: true.
    world.vss("takeover", destination={"name": "taken", "create": True, "overwrite": True})
    await world.synced("takeover")
    assert (world.secret_data("taken") or {})["password"] == value
    taken = world.secret("taken") or {}
    assert taken["metadata"]["labels"][MANAGED_BY] == "vault-syncd"
    assert taken["metadata"]["labels"]["team"] == "payments"
    assert [r["name"] for r in taken["metadata"]["ownerReferences"]] == ["takeover"]


async def test_type_change_and_deletion_policies(world: World) -> None:
    user, password = world.value("user"), world.value("password")
    await world.write_kv("kv-secret/info", {"username": user, "password": password})
    world.vss("typed")
    world.vss("deleted-with-owner", deletionPolicy="Delete")
    world.vss("retained", deletionPolicy="Retain")
    world.start_syncd()
    for name in ("typed", "deleted-with-owner", "retained"):
        await world.synced(name)

    # type is immutable: a new type is a new Secret.
    before = world.secret("typed") or {}
    assert before["type"] == "Opaque"
    world.vss("typed", destination={"name": "typed", "create": True,
                                    "type": "kubernetes.io/basic-auth"})
    await world.eventually(
        lambda: (world.secret("typed") or {}).get("type") == "kubernetes.io/basic-auth",
        message="the Secret recreated with the new type")
    after = world.secret("typed") or {}
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["data"] == before["data"]
    await world.eventually(
        lambda: world.condition("typed", "Ready").get("observedGeneration") == 2,
        message="the new spec reported")
    assert world.condition("typed", "Ready")["status"] == "True"

    # Delete: the ownerReference lets the garbage collector take the Secret along.
    owned = world.secret("deleted-with-owner") or {}
    assert [r["kind"] for r in owned["metadata"]["ownerReferences"]] == ["VaultStaticSecret"]
    world.kube.admin.delete(GROUP_VERSION, "VaultStaticSecret", "deleted-with-owner", APP_NS)
    await world.eventually(lambda: world.secret("deleted-with-owner") is None,
                           message="the Secret garbage-collected with its owner")

    # Retain: no ownerReference, the Secret stays, and syncd does not recreate or touch it.
    retained = world.secret("retained") or {}
    assert not retained["metadata"].get("ownerReferences")
    world.kube.admin.delete(GROUP_VERSION, "VaultStaticSecret", "retained", APP_NS)
    await world.eventually(lambda: world.get_vss("retained") is None)
    reads = world.vault_reads()
    await world.eventually(lambda: world.vault_reads() >= reads + 2, message="refreshes")
    kept = world.secret("retained") or {}
    assert kept["metadata"]["resourceVersion"] == retained["metadata"]["resourceVersion"]
    assert world.secret_data("retained") == {**(world.secret_data("retained") or {}),
                                             "password": password}
