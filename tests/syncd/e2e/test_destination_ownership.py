"""``create: false`` writes only a Secret that opts in, or that syncd made; never another
program's (issue 10, item 3: a Helm release record lost its ``release`` key).

Every VaultStaticSecret here is created by a namespace user (bound to ``edit`` only)
through their own client, as the attack would be.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.syncd.e2e.world import APP_NS, World

DESTINATION_OF = "secrets.vault-syncd.dev/destination-of"
HELM_RELEASE = "sh.helm.release.v1.web.v1"


def _secret(name: str, *, type: str = "Opaque", data: dict[str, str] | None = None,
            **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": type,
        "metadata": {"name": name, "namespace": APP_NS, **metadata},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in (data or {}).items()},
    }


def _untouched(world: World, name: str, before: dict[str, Any]) -> None:
    after = world.secret(name) or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], name
    assert after["data"] == before["data"], name
    assert not [r for r in world.syncd_writes() if r.resource == "secrets" and r.name == name]


async def test_create_false_writes_only_secrets_that_opt_in(world: World) -> None:
    value = world.value("ownership")
    await world.write_kv("kv-secret/info", {"password": value})
    owner = world.apply({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "sealed", "namespace": APP_NS}})
    release = base64.b64encode(b'{"name":"web","version":1,"manifest":"..."}').decode()
    theirs = {
        # Helm's record of a release, annotated by the tenant (who may edit it) to opt in.
        HELM_RELEASE: _secret(HELM_RELEASE, type="helm.sh/release.v1",
                              data={"release": release},
                              labels={"owner": "helm", "name": "web", "status": "deployed"}),
        # A Secret of the namespace that nobody opted in.
        "plain": _secret("plain", data={"password": "keep-me"}),
        # Another controller's Secret (its owner stands in for a SealedSecret), annotated by
        # the tenant.
        "sealed": _secret("sealed", data={"password": "sealed-value"}, ownerReferences=[{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "sealed",
            "uid": owner["metadata"]["uid"], "controller": True}]),
        # cert-manager's certificate, annotated by the tenant.
        "web-tls": _secret("web-tls", type="kubernetes.io/tls",
                           data={"tls.crt": "cert", "tls.key": "key"},
                           annotations={"cert-manager.io/certificate-name": "web"}),
        # A ServiceAccount's long-lived token.
        "deployer-token": _secret("deployer-token", type="kubernetes.io/service-account-token",
                                  annotations={"kubernetes.io/service-account.name": "deployer"}),
    }
    world.kube.admin.ensure_service_account(APP_NS, "deployer")
    for secret in theirs.values():
        world.apply(secret)
    world.apply(_secret("opted-in", data={"password": "placeholder"},
                        labels={"team": "payments"}, annotations={DESTINATION_OF: "opted-in"}))
    # Opted in, but for another VaultStaticSecret.
    world.apply(_secret("for-another", data={"password": "other"},
                        annotations={DESTINATION_OF: "someone-else"}))
    world.start_syncd()

    async with world.tenant() as tenant:
        for name in (HELM_RELEASE, "sealed", "web-tls"):
            await tenant.annotate_secret(name, {DESTINATION_OF: name})
        before = {name: world.secret(name) or {} for name in (*theirs, "for-another")}
        for name in (*theirs, "for-another", "opted-in"):
            await tenant.create_vss(name, destination={
                "name": name, "create": False, "transformation": {"excludeRaw": True}})

        # The opted-in Secret is written: its data, and nothing else.
        assert await world.synced("opted-in") == {"password": value}
        written = world.secret("opted-in") or {}
        assert written["metadata"]["labels"] == {"team": "payments"}
        assert written["metadata"]["annotations"] == {DESTINATION_OF: "opted-in"}

        expected = {
            HELM_RELEASE: "is of type helm.sh/release.v1",
            "deployer-token": "is of type kubernetes.io/service-account-token",
            "plain": f"does not opt in: with create: false, syncd writes only a Secret "
                     f"annotated {DESTINATION_OF}: plain",
            "for-another": f"annotated {DESTINATION_OF}: for-another",
            "sealed": "is controlled by ConfigMap sealed (metadata.ownerReferences)",
            "web-tls": "is cert-manager's",
        }
        for name, why in expected.items():
            found = await world.wait_condition(name, "Ready", status="False",
                                               reason="DestinationRefused")
            message = found["message"]
            assert message.startswith(f"spec.destination.name: Secret {APP_NS}/{name} "), message
            assert why in message and message.endswith("nothing was written"), message
            [event] = await world.eventually(
                lambda name=name: world.events("DestinationRefused", about=name))
            assert event["type"] == "Warning" and event["message"] == message

        # A few refreshes later, still nothing written to any of them.
        reads = world.vault_reads()
        await world.eventually(lambda: world.vault_reads() >= reads + 2 * len(expected),
                               message="refreshes")
        for name, secret in before.items():
            _untouched(world, name, secret)
        helm = world.secret_data(HELM_RELEASE) or {}
        assert helm == {"release": release}  # Helm keeps its record base64-encoded, twice

        # Opting in afterwards is enough (the annotation names this VaultStaticSecret).
        await tenant.annotate_secret("plain", {DESTINATION_OF: "plain"})
        world.vss("plain", destination={"name": "plain", "create": False,
                                        "transformation": {"excludeRaw": True}})
        await world.eventually(lambda: world.secret_data("plain") == {"password": value},
                               message="the opted-in Secret written")


async def test_create_false_keeps_writing_a_secret_syncd_created(world: World) -> None:
    value = world.value("created")
    await world.write_kv("kv-secret/info", {"password": value})
    world.vss("made-here", destination={"name": "made-here", "create": True,
                                        "transformation": {"excludeRaw": True}})
    world.start_syncd()
    await world.synced("made-here")
    # Turned into create: false, the Secret syncd created for it is still its to write.
    world.vss("made-here", destination={"name": "made-here", "create": False,
                                        "transformation": {"excludeRaw": True}})
    rotated = world.value("created-rotated")
    await world.write_kv("kv-secret/info", {"password": rotated})
    await world.eventually(lambda: world.secret_data("made-here") == {"password": rotated},
                           message="rotated into the Secret syncd created")
    assert world.condition("made-here", "Ready")["status"] == "True"
