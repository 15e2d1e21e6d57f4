"""manifests/unsealer/rbac.yaml and custody-rbac.yaml grant what `unsealer run` uses, and
nothing more.

Sufficiency: every end-to-end test runs the unsealer with the token of the ServiceAccount that
manifest binds, so a missing grant fails them. Minimality, here: after a run that exercises
every path (start, pod watch, unseal, a restart, Events, the custody Secret read), the
(verb, resource, namespace) triples the unsealer actually requested — read from the testbed's
request log — must be exactly the triples the Roles grant.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.unsealer.e2e.world import VAULT_NS, World

ROOT = Path(__file__).resolve().parents[3]
USER = f"system:serviceaccount:{VAULT_NS}:vault-unsealer"


def _granted() -> set[tuple[str, str, str]]:
    granted = set()
    documents = [document for manifest in ("rbac.yaml", "custody-rbac.yaml") for document in
                 yaml.safe_load_all((ROOT / "manifests/unsealer" / manifest).read_text())]
    for document in documents:
        if document["kind"] != "Role":
            continue
        namespace = document["metadata"]["namespace"]
        for rule in document["rules"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((verb, resource, namespace))
    return granted


async def test_the_roles_grant_exactly_what_is_used(world: World) -> None:
    world.start_unsealer()
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    await world.restart_vault(1)
    await world.eventually(lambda: not world.sealed(1))
    await world.stop_unsealer()
    used = {
        (record.verb, record.resource.split(".")[0], record.namespace)
        for record in world.kube.requests.log
        if record.user == USER
    }
    # A watch is authorised as the verb "watch", a list as "list".
    assert used == _granted(), f"used {sorted(used)} vs granted {sorted(_granted())}"
