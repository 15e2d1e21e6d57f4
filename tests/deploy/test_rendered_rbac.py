"""Both services run with the RBAC of each rendering, and it is exact.

syncd and the unsealer are run under a ServiceAccount bound by exactly the roles and bindings
that the rendering binds to theirs (``vault-syncd``, ``vault-unsealer``), its subject renamed
so that the grants of the end-to-end worlds (manifests/*/rbac.yaml, applied to the usual names)
play no part. Then they go through every kind of request they make (the RBAC tests'
exercises), and the testbed's request log must equal the grants: a permission the rendering
lacks fails the run (and shows as a request no grant covers), a permission it has in excess is
a grant no request used.
"""

from __future__ import annotations

import pytest

from tests.deploy.rendering import (
    MANIFESTS,
    OVERLAYS,
    Grant,
    bound_to,
    covered,
    grants,
    needs_kubectl,
    renamed,
    render,
)
from tests.syncd.e2e.conftest import world  # noqa: F401  (the fixture)
from tests.syncd.e2e.test_rbac import exercise_every_request, prepare_every_request
from tests.syncd.e2e.world import APP_NS, OPERATOR_NS
from tests.syncd.e2e.world import World as SyncdWorld
from tests.unsealer.e2e.world import VAULT_NS

pytestmark = needs_kubectl
RENDERED = "rendered"


def _used(log: list[object], user: str) -> set[Grant]:
    out: set[Grant] = set()
    for record in log:
        if record.user != user or record.resource.startswith("/"):  # type: ignore[attr-defined]
            continue
        qualified, _, subresource = record.resource.partition("/")  # type: ignore[attr-defined]
        plural, _, group = qualified.partition(".")
        resource = plural + (f"/{subresource}" if subresource else "")
        out.add(((group, resource, record.verb), record.namespace))  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("overlay", ["cluster-wide", "namespaced"])
async def test_syncd_runs_with_exactly_the_rbac_of_the_rendering(
    world: SyncdWorld, overlay: str,  # noqa: F811
) -> None:
    rbac = bound_to(render(MANIFESTS / "overlays" / overlay), OPERATOR_NS, "vault-syncd")
    watched = (APP_NS,) if overlay == "namespaced" else ()
    await prepare_every_request(world)
    settings = world._bound(RENDERED, renamed(rbac, namespace=OPERATOR_NS, name=RENDERED),
                            **({"watch_namespaces": watched} if watched else {}))
    world.start_syncd(settings)
    user = f"system:serviceaccount:{OPERATOR_NS}:{RENDERED}"
    await exercise_every_request(world, user=user)

    used = _used(world.kube.requests.log, user)
    missing, unused = covered(used, grants(rbac))
    assert not missing, f"syncd needs more than the {overlay} rendering grants: {missing}"
    assert not unused, f"the {overlay} rendering grants what syncd never uses: {unused}"
    if overlay == "namespaced":
        assert {namespace for _, namespace in used} == {OPERATOR_NS, APP_NS}


def test_the_overlays_bind_the_same_rules_to_the_unsealer() -> None:
    """One run of the unsealer below covers every overlay: they bind it the same rules."""
    rules = {overlay: grants(bound_to(render(MANIFESTS / "overlays" / overlay), VAULT_NS,
                                      "vault-unsealer")) for overlay in OVERLAYS}
    assert len({frozenset(r) for r in rules.values()}) == 1, rules
