"""ServiceAccount tokens, TokenRequest -> TokenReview, RBAC allow/deny with the real 403 bodies."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from testbed.kube import Kube

RBAC = "rbac.authorization.k8s.io/v1"


def _message(exc: ApiException) -> str:
    return str(json.loads(exc.body)["message"])


def _role(name: str, rules: list[dict], namespace: str | None = None) -> dict:
    kind = "Role" if namespace else "ClusterRole"
    md = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": RBAC, "kind": kind, "metadata": md, "rules": rules}


def _binding(
    name: str, role_kind: str, role: str, sa: str, sa_ns: str, *, namespace: str | None
) -> dict:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    md = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": md,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
    }


async def test_token_request_then_token_review(raw, kube: Kube) -> None:
    kube.admin.ensure_service_account("apps", "robot")
    reply = await raw(
        "POST",
        "/api/v1/namespaces/apps/serviceaccounts/robot/token",
        body={"spec": {"audiences": ["vault"], "expirationSeconds": 600}},
    )
    assert reply.status == 201
    assert reply.json["kind"] == "TokenRequest"
    token = reply.json["status"]["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:apps:robot"
    assert claims["aud"] == ["vault"] and claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"]["namespace"] == "apps"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"

    review = await raw(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": ["vault"]},
        },
    )
    assert review.status == 201
    status = review.json["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:apps:robot"
    assert status["user"]["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:apps",
        "system:authenticated",
    ]
    assert status["audiences"] == ["vault"]

    wrong_aud = await raw(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        body={"spec": {"token": token, "audiences": ["other"]}},
    )
    assert "authenticated" not in wrong_aud.json["status"]
    assert wrong_aud.json["status"]["error"].startswith("[invalid bearer token, ")

    kube.admin.delete("v1", "ServiceAccount", "robot", "apps")
    gone = await raw(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        body={"spec": {"token": token, "audiences": ["vault"]}},
    )
    assert "authenticated" not in gone.json["status"]

    too_short = await raw(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/default/token",
        body={"spec": {"expirationSeconds": 60}},
    )
    assert too_short.status == 422


async def test_pod_bound_token_dies_with_the_pod(raw, kube: Kube) -> None:
    await kube.controllers.disable("kubelet")
    kube.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x:1"}]},
        }
    )
    token = kube.admin.mint_token("default", "default", audiences=["vault"], pod="p")
    review = {"spec": {"token": token, "audiences": ["vault"]}}
    ok = (await raw("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)).json[
        "status"
    ]
    assert ok["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    kube.admin.delete("v1", "Pod", "p", "default")
    dead = (await raw("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)).json[
        "status"
    ]
    assert "authenticated" not in dead


async def test_expired_and_garbage_tokens(raw, kube: Kube) -> None:
    kube.admin.ensure_service_account("default", "old")
    token = kube.admin.mint_token("default", "old", audiences=["vault"],
                                  expiration_seconds=600)
    review = {"spec": {"token": token, "audiences": ["vault"]}}
    path = "/apis/authentication.k8s.io/v1/tokenreviews"
    # kube-apiserver validates exp with go-jose's default leeway of one minute.
    kube.cluster.signer.advance(600 + 55)
    assert (await raw("POST", path, body=review)).json["status"]["authenticated"] is True
    kube.cluster.signer.advance(10)
    expired = (await raw("POST", path, body=review)).json["status"]
    assert "authenticated" not in expired
    assert expired["error"] == "[invalid bearer token, service account token has expired]"
    unauthorized = await raw("GET", "/api/v1/namespaces", token="garbage")
    assert unauthorized.status == 401 and unauthorized.json["reason"] == "Unauthorized"


async def test_a_token_for_another_audience_is_no_key_to_the_api_server(raw, kube: Kube) -> None:
    """As kube-apiserver: a request's bearer token must be for the API server's audiences."""
    kube.admin.ensure_service_account("default", "deployer")
    kube.admin.grant("default", "deployer", "cluster-admin")
    for_vault = kube.admin.mint_token("default", "deployer", audiences=["vault"])
    for_api = kube.admin.mint_token("default", "deployer")
    refused = await raw("GET", "/api/v1/namespaces/default/secrets", token=for_vault)
    assert refused.status == 401 and refused.json["reason"] == "Unauthorized"
    assert (await raw("GET", "/api/v1/namespaces/default/secrets", token=for_api)).status == 200


async def test_rbac_allows_and_denies_service_account(kube: Kube, tmp_path: Path) -> None:
    kube.admin.create_namespace("apps")
    kube.admin.create(
        _role(
            "secret-reader",
            [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "verbs": ["get"],
                    "resourceNames": ["allowed"],
                },
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
            ],
            namespace="apps",
        )
    )
    kube.admin.create(_binding("b", "Role", "secret-reader", "syncd", "apps", namespace="apps"))
    kube.admin.create(
        _role(
            "lease-user",
            [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]}],
        )
    )
    kube.admin.create(
        _binding("lb", "ClusterRole", "lease-user", "syncd", "apps", namespace="apps")
    )
    for name in ("allowed", "denied"):
        kube.admin.create(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "apps"}}
        )
    token = kube.admin.mint_token("apps", "syncd")
    path = kube.write_kubeconfig(tmp_path / "sa-kubeconfig", token=token, namespace="apps")
    api = await config.new_client_from_config(config_file=str(path))
    try:
        v1 = client.CoreV1Api(api)
        assert (await v1.read_namespaced_secret("allowed", "apps")).metadata.name == "allowed"
        with pytest.raises(ApiException) as caught:
            await v1.read_namespaced_secret("denied", "apps")
        assert caught.value.status == 403
        assert (
            'secrets "denied" is forbidden: User "system:serviceaccount:apps:syncd" cannot get '
            'resource "secrets" in API group "" in the namespace "apps"'
        ) in _message(caught.value)
        with pytest.raises(ApiException) as caught:
            await v1.list_namespaced_secret("apps")  # get on a name does not grant list
        assert 'cannot list resource "secrets"' in _message(caught.value)
        assert (await v1.list_namespaced_config_map("apps")).items is not None
        with pytest.raises(ApiException) as caught:
            await v1.list_namespaced_config_map("apps", watch=True, timeout_seconds=1)
        assert caught.value.status == 403  # list does not grant watch
        with pytest.raises(ApiException) as caught:
            await v1.list_namespaced_config_map("default")
        assert caught.value.status == 403  # the Role is namespaced
        coordination = client.CoordinationV1Api(api)
        lease = await coordination.create_namespaced_lease(
            "apps", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}
        )
        assert lease.spec.holder_identity == "me"  # ClusterRole bound by a RoleBinding
        with pytest.raises(ApiException) as caught:
            await coordination.list_lease_for_all_namespaces()
        assert "at the cluster scope" in _message(caught.value)
        apps = client.AppsV1Api(api)
        with pytest.raises(ApiException) as caught:
            await apps.patch_namespaced_deployment_scale("x", "apps", {"spec": {"replicas": 1}})
        assert 'cannot patch resource "deployments/scale" in API group "apps"' in _message(
            caught.value
        )
        version = await client.VersionApi(api).get_code()
        assert version.minor == "32"  # discovery is open to every authenticated user
    finally:
        await api.close()


async def test_access_reviews_and_admin_can(raw, kube: Kube) -> None:
    kube.admin.create(
        _role(
            "pod-reader",
            [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "pods/status"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        )
    )
    kube.admin.create(_binding("pr", "ClusterRole", "pod-reader", "mon", "ops", namespace=None))
    user = "system:serviceaccount:ops:mon"
    assert kube.admin.can(user, "list", "pods", namespace="any")
    assert kube.admin.can(user, "get", "pods", subresource="status", namespace="x")
    assert not kube.admin.can(user, "delete", "pods", namespace="any")
    review = await raw(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "spec": {
                "user": user,
                "resourceAttributes": {"verb": "watch", "resource": "pods", "namespace": "a"},
            }
        },
    )
    assert review.status == 201 and review.json["status"]["allowed"] is True
    denied = await raw(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "spec": {
                "user": user,
                "resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": "a"},
            }
        },
    )
    assert denied.json["status"]["allowed"] is False
    impersonated = await raw(
        "GET", "/api/v1/namespaces/a/secrets", headers={"Impersonate-User": user}
    )
    assert impersonated.status == 403


async def test_pods_need_their_service_account(raw, kube: Kube) -> None:
    await kube.controllers.disable("kubelet")
    pod = {
        "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "missing", "containers": [{"name": "c", "image": "x:1"}]},
    }
    reply = await raw("POST", "/api/v1/namespaces/default/pods", body=pod)
    assert reply.status == 403
    assert reply.json["message"] == (
        'pods "p" is forbidden: error looking up service account '
        'default/missing: serviceaccount "missing" not found'
    )
    kube.admin.ensure_service_account("default", "missing")
    created = await raw("POST", "/api/v1/namespaces/default/pods", body=pod)
    assert created.status == 201
    volumes = created.json["spec"]["volumes"]
    assert volumes[0]["name"].startswith("kube-api-access-")
    mounts = created.json["spec"]["containers"][0]["volumeMounts"]
    assert mounts[0]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"


GADGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
GADGET_RULE = {
    "apiGroups": ["example.com"],
    "resources": ["gadgets"],
    "verbs": ["create", "get", "list"],
}
AGGREGATE_TO_EDIT = {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}


async def test_aggregated_roles_get_their_rules_from_the_aggregation_controller(
    raw, kube: Kube
) -> None:
    """What a CRD's ``aggregate-to-edit`` ClusterRole does in a cluster: the controller writes
    its rules into ``edit`` (and, through ``edit``, ``admin``); only the stored rules grant."""

    def rules(name: str) -> list[dict]:
        return list((kube.admin.get(RBAC, "ClusterRole", name) or {}).get("rules") or [])

    def has(name: str, rule: dict) -> bool:
        return rule in rules(name)

    # Seeded as a running cluster has them: edit = its aggregate + view's; admin adds RBAC.
    assert any(r["resources"] == ["serviceaccounts/token"] for r in rules("edit"))
    assert any("pods" in r["resources"] and "watch" in r["verbs"] for r in rules("view"))
    assert not any("secrets" in r["resources"] for r in rules("view"))
    assert rules("view")[0] in rules("edit") and rules("edit")[0] in rules("admin")
    assert any("rolebindings" in r["resources"] for r in rules("admin"))
    assert not any("rolebindings" in r["resources"] for r in rules("edit"))

    kube.admin.create(GADGETS)
    await kube.wait_for(
        lambda: kube.cluster.catalog.lookup("example.com", "v1", "gadgets"),
        message="gadgets served",
    )
    kube.admin.create_namespace("apps")
    kube.admin.grant("apps", "editor", "edit", in_namespace="apps")
    token = kube.admin.mint_token("apps", "editor")
    path = "/apis/example.com/v1/namespaces/apps/gadgets"

    async def create(name: str) -> int:
        body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name}}
        return (await raw("POST", path, body=body, token=token)).status

    assert await create("before") == 403

    # With the controller stopped, a labelled role changes nothing: the authorizer does not
    # aggregate by itself.
    await kube.controllers.disable("clusterrole-aggregation")
    role = {**_role("gadgets-edit", [GADGET_RULE]), "metadata": {
        "name": "gadgets-edit", "labels": AGGREGATE_TO_EDIT}}
    kube.admin.create(role)
    assert not has("edit", GADGET_RULE)
    assert await create("controller-down") == 403

    kube.controllers.enable("clusterrole-aggregation")  # resyncs
    await kube.wait_for(lambda: has("edit", GADGET_RULE), message="edit aggregates gadgets")
    await kube.wait_for(lambda: has("admin", GADGET_RULE), message="admin through edit")
    assert not has("view", GADGET_RULE)
    assert await create("aggregated") == 201
    edit = kube.admin.get(RBAC, "ClusterRole", "edit") or {}
    managers = {e["manager"] for e in edit["metadata"].get("managedFields") or []}
    assert "clusterrole-aggregation-controller" in managers

    # Rules written by hand into an aggregated role are overwritten.
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    kube.admin.update({**edit, "rules": [everything]})
    await kube.wait_for(
        lambda: has("edit", GADGET_RULE) and not has("edit", everything),
        message="hand-written rules replaced",
    )

    # The label removed: the rule leaves edit and admin, and the editor is refused again.
    kube.admin.patch(RBAC, "ClusterRole", "gadgets-edit", {"metadata": {"labels": {
        "rbac.authorization.k8s.io/aggregate-to-edit": None}}})
    await kube.wait_for(
        lambda: not has("edit", GADGET_RULE) and not has("admin", GADGET_RULE),
        message="gadgets gone from edit and admin",
    )
    assert await create("after") == 403
