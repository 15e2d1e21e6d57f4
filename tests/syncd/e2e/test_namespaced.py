"""The namespaced install: ``--watch-namespace a,b`` with the Roles of manifests/syncd/namespaced/
and no ClusterRole.

As in test_rbac.py, one world takes syncd through every kind of Kubernetes request it can make,
here as a ServiceAccount bound only by those Roles (its own namespace's, and a copy of
watched-namespace.yaml in each of two watched namespaces). Sufficiency: it syncs in both
watched namespaces, with no Forbidden anywhere. Minimality: every (API group, resource, verb)
the Roles grant in the first watched namespace and in syncd's own is used there, so the template
holds nothing syncd does not need. Boundary: every request is namespaced and made in a watched
namespace or syncd's own: none is cluster-scoped, and a VaultStaticSecret in a namespace not
watched is neither read nor synced.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from syncd.cli import _settings, build_parser, main
from tests.syncd.e2e.test_rbac import exercise_every_request, prepare_every_request
from tests.syncd.e2e.world import APP_NS, OPERATOR_NS, ROOT, World

Triple = tuple[str, str, str]  # (API group, resource[/subresource], verb)
SECOND_NS = "app2"
OUTSIDE_NS = "outside"
USER = f"system:serviceaccount:{OPERATOR_NS}:vault-syncd-namespaced"


def test_watch_namespace_takes_a_list_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _settings(build_parser().parse_args(["run"])).watch_namespaces == ()
    parsed = _settings(build_parser().parse_args(["run", "--watch-namespace", "a, b,,a"]))
    assert parsed.watch_namespaces == ("a", "b")
    monkeypatch.setenv("SYNCD_WATCH_NAMESPACE", "team-1,team-2")
    assert _settings(build_parser().parse_args(["run"])).watch_namespaces == ("team-1", "team-2")


def test_a_bad_namespace_name_is_one_line_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--watch-namespace", "app,Not_A_Namespace"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--watch-namespace" in err and "Not_A_Namespace" in err


def _granted(watched: tuple[str, ...]) -> dict[tuple[Triple, str], str]:
    """(triple, namespace) -> the Role granting it, as the namespaced manifests grant them."""
    directory = ROOT / "manifests" / "syncd" / "namespaced"
    own = [d for d in yaml.safe_load_all((directory / "rbac.yaml").read_text()) if d]
    template = [d for d in yaml.safe_load_all((directory / "watched-namespace.yaml").read_text())
                if d]
    kinds = [d["kind"] for d in own + template]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    roles = [(r, r["metadata"]["namespace"]) for r in own if r["kind"] == "Role"]
    roles += [(r, namespace) for r in template if r["kind"] == "Role" for namespace in watched]
    out: dict[tuple[Triple, str], str] = {}
    for role, namespace in roles:
        for rule in role["rules"]:
            assert "resourceNames" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        key = ((group, resource, verb), namespace)
                        assert key not in out, f"granted twice: {key}"
                        out[key] = role["metadata"]["name"]
    return out


def _used(world: World) -> set[tuple[Triple, str]]:
    out: set[tuple[Triple, str]] = set()
    for record in world.requests_of(USER, leases=True):
        if record.resource.startswith("/"):  # discovery and other non-resource paths
            continue
        qualified, _, subresource = record.resource.partition("/")
        plural, _, group = qualified.partition(".")
        out.add(((group, plural + (f"/{subresource}" if subresource else ""), record.verb),
                 record.namespace))
    return out


def _namespace_with_a_token(world: World, namespace: str) -> None:
    world.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    token = world.secret("vault-token") or {}
    world.apply({"apiVersion": "v1", "kind": "Secret", "type": token.get("type", "Opaque"),
                 "metadata": {"name": "vault-token", "namespace": namespace},
                 "data": token["data"]})


async def test_namespaced_roles_grant_exactly_what_syncd_uses_and_nothing_outside(
    world: World,
) -> None:
    await prepare_every_request(world)
    for namespace in (SECOND_NS, OUTSIDE_NS):
        _namespace_with_a_token(world, namespace)
    world.vss("second", namespace=SECOND_NS)
    world.vss("not-watched", namespace=OUTSIDE_NS)

    watched = (APP_NS, SECOND_NS)
    world.start_syncd(world.namespaced("vault-syncd-namespaced", watch=watched))
    await world.eventually(lambda: world.secret_data("second", SECOND_NS), message="app2 synced")
    await exercise_every_request(world, user=USER)

    # The namespace not watched: nothing read, nothing written, nothing synced there.
    assert world.secret("not-watched", OUTSIDE_NS) is None
    assert not world.status("not-watched", OUTSIDE_NS)

    used, granted = _used(world), _granted(watched)
    namespaces = {namespace for _, namespace in used}
    assert "" not in namespaces, "a cluster-scoped request"
    assert namespaces == {OPERATOR_NS, APP_NS, SECOND_NS}, namespaces
    assert used - set(granted) == set(), "syncd needs more than the namespaced Roles grant"
    fully_exercised = {key for key in granted if key[1] in (OPERATOR_NS, APP_NS)}
    assert fully_exercised - used == set(), "the namespaced Roles grant what syncd never uses"
    # The second namespace runs on the same template, and its informers really follow it.
    assert {(("secrets.vault-syncd.dev", "vaultstaticsecrets", verb), SECOND_NS)
            for verb in ("list", "watch")} <= used


def test_the_all_namespaces_mode_keeps_its_cluster_role() -> None:
    documents: list[dict[str, Any]] = [
        d for d in yaml.safe_load_all((ROOT / "manifests/syncd/rbac.yaml").read_text()) if d]
    assert {d["kind"] for d in documents} >= {"ClusterRole", "ClusterRoleBinding"}
