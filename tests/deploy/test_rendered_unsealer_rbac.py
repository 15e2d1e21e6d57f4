"""The unsealer runs with the RBAC the renderings bind to ``vault-unsealer`` (every overlay binds
the same rules: test_rendered_rbac.py), and it is exact: see test_rendered_rbac.py's docstring."""

from __future__ import annotations

import dataclasses

from tests.deploy.rendering import (
    MANIFESTS,
    bound_to,
    covered,
    grants,
    needs_kubectl,
    renamed,
    render,
)
from tests.deploy.test_rendered_rbac import RENDERED, _used
from tests.unsealer.e2e.conftest import world  # noqa: F401  (the fixture)
from tests.unsealer.e2e.world import VAULT_NS, World

pytestmark = needs_kubectl


async def test_the_unsealer_runs_with_exactly_the_rbac_of_the_rendering(
    world: World,  # noqa: F811
) -> None:
    rbac = bound_to(render(MANIFESTS / "overlays" / "raspberry-pi"), VAULT_NS, "vault-unsealer")
    world.kube.admin.ensure_service_account(VAULT_NS, RENDERED)
    for document in renamed(rbac, namespace=VAULT_NS, name=RENDERED):
        world.kube.admin.apply(document)
    token = world.kube.admin.mint_token(VAULT_NS, RENDERED)
    kubeconfig = world.kube.write_kubeconfig(world.directory / "rendered", token=token)
    world.start_unsealer(dataclasses.replace(world.settings, kubeconfig=str(kubeconfig)))
    await world.eventually(lambda: not any(world.sealed(n) for n in range(3)))
    await world.restart_vault(1)
    await world.eventually(lambda: not world.sealed(1))
    await world.stop_unsealer()

    user = f"system:serviceaccount:{VAULT_NS}:{RENDERED}"
    # Grants by resource (resourceNames narrow them further: the RBAC tests of the unsealer
    # check those); the custody Secret read, the pod watch and the Events included.
    used = {((g, r.split("/")[0], v), ns) for (g, r, v), ns in _used(world.kube.requests.log,
                                                                    user)}
    missing, unused = covered(used, grants(rbac))
    assert not missing, f"the unsealer needs more than the renderings grant: {missing}"
    assert not unused, f"the renderings grant what the unsealer never uses: {unused}"
    assert {ns for _, ns in used} == {VAULT_NS, "vault-custody"}
