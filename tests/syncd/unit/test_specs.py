"""Parsing and validating VaultConnection, VaultAuth and VaultStaticSecret."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from syncd.specs import (
    AutoTarget,
    LabelSelector,
    NamedTarget,
    ObjectRef,
    Problem,
    SelectorRequirement,
    SelectorTarget,
    SpecError,
    parse_vault_auth,
    parse_vault_connection,
    parse_vault_static_secret,
)

Obj = dict[str, Any]
Make = Callable[..., Obj]


def problems(parse: Callable[[Obj], Any], obj: Obj) -> dict[str, str]:
    """The problems ``parse`` finds, by field path."""
    with pytest.raises(SpecError) as info:
        parse(obj)
    return {p.path: p.message for p in info.value.problems}


# --- VSO manifests, as VSO documents them, with only apiVersion changed --------------------

VSO_DOCS = """
apiVersion: secrets.hashicorp.com/v1beta1
kind: VaultConnection
metadata:
  name: default
  namespace: vault-secrets-operator-system
spec:
  address: http://vault.vault.svc.cluster.local:8200
---
apiVersion: secrets.hashicorp.com/v1beta1
kind: VaultAuth
metadata:
  name: static-auth
  namespace: app
spec:
  method: kubernetes
  mount: demo-auth-mount
  kubernetes:
    role: role1
    serviceAccount: demo-static-app
    audiences:
      - vault
---
apiVersion: secrets.hashicorp.com/v1beta1
kind: VaultStaticSecret
metadata:
  name: vault-kv-app
  namespace: app
spec:
  type: kv-v2
  mount: kvv2
  path: webapp/config
  destination:
    name: secretkv
    create: true
  refreshAfter: 30s
  vaultAuthRef: static-auth
  rolloutRestartTargets:
    - kind: Deployment
      name: vso-demo
---
apiVersion: secrets.hashicorp.com/v1beta1
kind: VaultStaticSecret
metadata:
  name: vault-kv-registry
  namespace: awesomeapps
spec:
  type: kv-v2
  mount: kvv2
  path: docker/config
  destination:
    name: myregistrykey
    create: true
    type: "kubernetes.io/dockerconfigjson"
---
apiVersion: secrets.hashicorp.com/v1beta1
kind: VaultStaticSecret
metadata:
  name: filtered
  namespace: app
spec:
  vaultAuthRef: other-ns/static-auth
  type: kv-v1
  mount: kv
  path: app
  hmacSecretData: false
  destination:
    name: filtered
    create: true
    labels:
      app.kubernetes.io/name: web
    annotations:
      example.com/owner: team-a
    transformation:
      excludeRaw: true
      excludes: ["^internal_"]
      includes: ["^db_", "password$"]
  syncConfig:
    instantUpdates: true
"""


def vso_manifests() -> list[Obj]:
    docs = list(yaml.safe_load_all(VSO_DOCS))
    for doc in docs:
        doc["apiVersion"] = "secrets.vault-syncd.dev/v1beta1"
    return docs


def test_vso_manifests_parse(defaulted: Callable[[Obj], Obj]) -> None:
    connection, auth, app, registry, filtered = vso_manifests()

    c = parse_vault_connection(defaulted(connection))
    assert c.address == "http://vault.vault.svc.cluster.local:8200"
    assert c.skip_tls_verify is False and c.timeout_seconds is None

    a = parse_vault_auth(defaulted(auth))
    assert a.method == "kubernetes" and a.mount == "demo-auth-mount"
    assert a.kubernetes is not None
    assert a.kubernetes.role == "role1" and a.kubernetes.service_account == "demo-static-app"
    assert a.kubernetes.audiences == ("vault",)
    assert a.kubernetes.token_expiration_seconds == 600
    assert a.vault_connection_ref is None

    s = parse_vault_static_secret(defaulted(app))
    assert (s.kv_type, s.mount, s.path, s.version) == ("kv-v2", "kvv2", "webapp/config", 0)
    assert s.vault_auth_ref == ObjectRef(namespace="app", name="static-auth")
    assert s.refresh_after_seconds == 30
    assert s.hmac_secret_data is True
    assert s.destination.name == "secretkv" and s.destination.create
    assert s.destination.type == "Opaque"
    assert s.rollout_restart_targets == (NamedTarget(kind="Deployment", name="vso-demo"),)
    assert s.deletion_policy == "Delete"
    assert s.warnings == ()

    r = parse_vault_static_secret(defaulted(registry))
    assert r.destination.type == "kubernetes.io/dockerconfigjson"
    assert r.vault_auth_ref is None  # the default VaultAuth of syncd's namespace

    f = parse_vault_static_secret(filtered)
    assert f.vault_auth_ref == ObjectRef(namespace="other-ns", name="static-auth")
    assert f.hmac_secret_data is False and f.kv_type == "kv-v1"
    t = f.destination.transformation
    assert t.exclude_raw and [p.pattern for p in t.includes] == ["^db_", "password$"]
    assert [p.pattern for p in t.excludes] == ["^internal_"]
    assert dict(f.destination.labels) == {"app.kubernetes.io/name": "web"}


def test_template_names_are_unique_in_a_resource(vss: Make) -> None:
    obj = vss(destination={"name": "s", "transformation": {"templates": {
        "a": {"name": "common", "text": "x"}, "b": {"name": "common", "text": "y"},
        "c": {"text": '{{ template "common" . }}'}}}})
    found = problems(parse_vault_static_secret, obj)
    assert found == {"spec.destination.transformation.templates[b].name":
                     "duplicate template name 'common' (also templates[a])"}


def test_vso_go_templates_are_accepted_and_jinja2_without_its_marker_gets_a_hint(
        vss: Make) -> None:
    go = '{{- printf "postgres://%s" (get .Secrets "password") -}}'
    s = parse_vault_static_secret(vss(destination={"name": "s", "transformation": {
        "templates": {"url": {"text": go}}}}))
    assert s.destination.transformation.templates["url"].text == go
    obj = vss(destination={"name": "s", "transformation": {"templates": {
        "url": {"text": "postgres://{{ secrets.password }}"}}}})
    found = problems(parse_vault_static_secret, obj)
    message = found["spec.destination.transformation.templates[url].text"]
    assert 'template syntax error on line 1: function "secrets" not defined' in message
    assert "{{ .Secrets.password }}; for Jinja2, make the first line of the text {{!jinja2}}" \
        in message


# --- VaultStaticSecret --------------------------------------------------------------------


def test_minimal_vss_defaults(vss: Make) -> None:
    s = parse_vault_static_secret(vss())
    assert (s.namespace, s.name, s.generation, s.uid) == ("app", "web", 1, "u-1")
    assert s.refresh_after_seconds == 60
    assert s.hmac_secret_data and s.version == 0 and s.deletion_policy == "Delete"
    assert not s.destination.create and not s.destination.overwrite
    assert s.destination.type == "Opaque"
    assert s.destination.transformation.templates == {}
    assert s.rollout_restart_targets == ()
    assert s.vault_namespace is None


def test_full_vss(vss: Make) -> None:
    obj = vss(
        vaultAuthRef="auth", namespace="team-a", mount="/kv/", path="/a/b/", version=4,
        refreshAfter="1h30m", hmacSecretData=False, deletionPolicy="Retain",
        destination={
            "name": "app.config", "create": True, "overwrite": True,
            "labels": {"app": "web"}, "annotations": {"note": "free text: anything"},
            "type": "kubernetes.io/tls",
            "transformation": {"templates": {"tls.crt": {"text": "{{ .Secrets.cert }}"}},
                               "excludeRaw": True},
        },
        rolloutRestartTargets=[
            {"kind": "argo.Rollout", "name": "web"},
            {"kind": "StatefulSet", "selector": {"matchExpressions": [
                {"key": "tier", "operator": "Exists"}]}},
            {"auto": True},
        ],
    )
    obj["metadata"]["labels"] = {"team": "a"}
    obj["metadata"]["annotations"] = {"x": "y"}
    s = parse_vault_static_secret(obj)
    assert s.vault_auth_ref == ObjectRef(namespace="app", name="auth")
    assert (s.vault_namespace, s.mount, s.path, s.version) == ("team-a", "kv", "a/b", 4)
    assert s.refresh_after_seconds == 5400
    assert not s.hmac_secret_data and s.deletion_policy == "Retain"
    assert dict(s.labels) == {"team": "a"} and dict(s.annotations) == {"x": "y"}
    d = s.destination
    assert (d.name, d.create, d.overwrite, d.type) == ("app.config", True, True,
                                                      "kubernetes.io/tls")
    assert list(d.transformation.templates) == ["tls.crt"]
    assert d.transformation.exclude_raw
    assert s.rollout_restart_targets == (
        NamedTarget(kind="argo.Rollout", name="web"),
        SelectorTarget(kind="StatefulSet", selector=LabelSelector(match_expressions=(
            SelectorRequirement(key="tier", operator="Exists", values=()),))),
        AutoTarget(kinds=("Deployment", "StatefulSet", "DaemonSet", "argo.Rollout")),
    )


def test_parsed_values_are_frozen(vss: Make) -> None:
    s = parse_vault_static_secret(vss())
    with pytest.raises(AttributeError):
        s.path = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.destination.labels["x"] = "y"  # type: ignore[index]


def test_all_problems_reported_together(vss: Make) -> None:
    obj = vss(
        type="kv-v1", version=2, refreshAfter="soon",
        destination={"name": "Bad_Name", "transformation": {
            "includes": ["ok", "abc["], "templates": {"t": {"text": "{{ x }"}}}},
        rolloutRestartTargets=[{"kind": "Pod", "name": "web"}],
    )
    with pytest.raises(SpecError) as info:
        parse_vault_static_secret(obj)
    error = info.value
    assert error.obj == "VaultStaticSecret app/web"
    found = {p.path: p.message for p in error.problems}
    assert found == {
        "spec.version": "only a kv-v2 secret has versions; remove the version or set type: kv-v2",
        "spec.refreshAfter": "invalid duration 'soon': use a number and a unit s, m or h, "
                             "for example 30s, 1.5h or 1m30s",
        "spec.destination.name": found["spec.destination.name"],
        "spec.destination.transformation.includes[1]":
            "invalid regular expression: unterminated character set at position 3",
        "spec.destination.transformation.templates[t].text": found[
            "spec.destination.transformation.templates[t].text"],
        "spec.rolloutRestartTargets[0].kind":
            "unknown kind 'Pod': use one of Deployment, StatefulSet, DaemonSet, argo.Rollout",
    }
    assert "'Bad_Name' is not a valid name" in found["spec.destination.name"]
    assert "template syntax error on line 1" in found[
        "spec.destination.transformation.templates[t].text"]
    text = str(error)
    assert text.startswith("VaultStaticSecret app/web is invalid: spec.version: only a kv-v2")
    assert all(str(p) in text for p in error.problems)
    assert str(Problem(path="a.b", message="c")) == "a.b: c"


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"mount": None}, "spec.mount", "is required (the KV mount, e.g. secret)"),
        ({"mount": "///"}, "spec.mount", "must not be only slashes (the KV mount, e.g. secret)"),
        ({"path": "a/../b"}, "spec.path", "'a/../b' has an empty, '.' or '..' segment"),
        ({"path": "a//b"}, "spec.path", "'a//b' has an empty, '.' or '..' segment"),
        ({"path": "a?v=1"}, "spec.path", "'a?v=1' must not contain '?', '#' or control characters"),
        ({"type": "kv-v3"}, "spec.type", "unknown value 'kv-v3': use one of kv-v1, kv-v2"),
        ({"type": None}, "spec.type", "is required"),
        ({"version": -1}, "spec.version", "must be at least 0, got -1"),
        ({"version": "3"}, "spec.version", "must be an integer, not a string"),
        ({"refreshAfter": "0.5s"}, "spec.refreshAfter", "'0.5s' is too short: use at least 1s"),
        ({"refreshAfter": 30}, "spec.refreshAfter", "must be a string, not a number"),
        ({"hmacSecretData": "yes"}, "spec.hmacSecretData",
         "must be true or false, not a string"),
        ({"deletionPolicy": "Orphan"}, "spec.deletionPolicy",
         "unknown value 'Orphan': use one of Delete, Retain"),
        ({"destination": None}, "spec.destination", "is required"),
        ({"destination": ["x"]}, "spec.destination", "must be an object, not a list"),
        ({"destination": {"create": True}}, "spec.destination.name",
         "is required (the Secret to write)"),
        ({"vaultAuthRef": "a/b/c"}, "spec.vaultAuthRef",
         "invalid reference 'a/b/c': use <name> or <namespace>/<name>"),
        ({"vaultAuthRef": "/auth"}, "spec.vaultAuthRef",
         "invalid reference '/auth': use <name> or <namespace>/<name>"),
        ({"rolloutRestartTargets": {"kind": "Deployment"}}, "spec.rolloutRestartTargets",
         "must be a list, not an object"),
        ({"rolloutRestartTargets": ["web"]}, "spec.rolloutRestartTargets[0]",
         "must be an object, not a string"),
    ],
)
def test_vss_field_problems(vss: Make, spec: Obj, path: str, message: str) -> None:
    assert problems(parse_vault_static_secret, vss(**spec))[path] == message


def test_refs_resolve_and_validate(vss: Make) -> None:
    parsed = parse_vault_static_secret(vss(vaultAuthRef="team-b/auth.v2"))
    assert parsed.vault_auth_ref == ObjectRef(namespace="team-b", name="auth.v2")
    assert str(parsed.vault_auth_ref) == "team-b/auth.v2"
    found = problems(parse_vault_static_secret, vss(vaultAuthRef="Team/auth"))
    assert "'Team' is not a valid namespace" in found["spec.vaultAuthRef"]
    found = problems(parse_vault_static_secret, vss(vaultAuthRef="-auth"))
    assert "'-auth' is not a valid name" in found["spec.vaultAuthRef"]
    assert parse_vault_static_secret(vss(vaultAuthRef="")).vault_auth_ref is None


@pytest.mark.parametrize(
    ("target", "path", "message"),
    [
        ({"kind": "Job", "name": "x"}, "[0].kind",
         "unknown kind 'Job': use one of Deployment, StatefulSet, DaemonSet, argo.Rollout"),
        ({"name": "web"}, "[0].kind",
         "is required with a name or a selector: one of Deployment, StatefulSet, DaemonSet, "
         "argo.Rollout"),
        ({"kind": "Deployment"}, "[0]", "set exactly one of name, selector or auto: true"),
        ({"kind": "Deployment", "name": "a", "auto": True}, "[0]",
         "set exactly one of name, selector or auto: true"),
        ({"auto": False}, "[0]", "set exactly one of name, selector or auto: true"),
        ({"kind": "Deployment", "name": "Web"}, "[0].name",
         "'Web' is not a valid name: use at most 253 lowercase letters, digits, '-' and '.', "
         "starting and ending with a letter or digit"),
        ({"kind": "Deployment", "selector": {}}, "[0].selector",
         "an empty selector would restart every Deployment in the namespace; add matchLabels "
         "or matchExpressions, or use auto: true"),
        ({"kind": "Deployment", "selector": {"matchLabels": {"app": 1}}},
         "[0].selector.matchLabels[app]",
         "must be a string, not a number (quote numbers and booleans in YAML)"),
        ({"kind": "Deployment", "selector": {"matchLabels": {"app": "a b"}}},
         "[0].selector.matchLabels[app]",
         "label value 'a b' must be empty or at most 63 letters, digits, '-', '_' and '.', "
         "starting and ending with a letter or digit"),
        ({"kind": "Deployment", "selector": {"matchExpressions": [
            {"key": "tier", "operator": "Like", "values": ["a"]}]}},
         "[0].selector.matchExpressions[0].operator",
         "unknown value 'Like': use one of In, NotIn, Exists, DoesNotExist"),
        ({"kind": "Deployment", "selector": {"matchExpressions": [
            {"key": "tier", "operator": "In"}]}},
         "[0].selector.matchExpressions[0].values", "must not be empty with operator In"),
        ({"kind": "Deployment", "selector": {"matchExpressions": [
            {"key": "tier", "operator": "Exists", "values": ["a"]}]}},
         "[0].selector.matchExpressions[0].values", "must be empty with operator Exists"),
        ({"kind": "Deployment", "selector": {"matchExpressions": [
            {"operator": "Exists"}]}},
         "[0].selector.matchExpressions[0].key", "is required (a label key)"),
    ],
)
def test_target_problems(vss: Make, target: Obj, path: str, message: str) -> None:
    found = problems(parse_vault_static_secret, vss(rolloutRestartTargets=[target]))
    assert found[f"spec.rolloutRestartTargets{path}"] == message


def test_auto_target_with_kind(vss: Make) -> None:
    s = parse_vault_static_secret(vss(rolloutRestartTargets=[{"auto": True, "kind": "DaemonSet"}]))
    assert s.rollout_restart_targets == (AutoTarget(kinds=("DaemonSet",)),)


def test_selector_matches_and_query() -> None:
    selector = LabelSelector(
        match_labels={"app": "web"},
        match_expressions=(
            SelectorRequirement(key="tier", operator="In", values=("a", "b")),
            SelectorRequirement(key="env", operator="NotIn", values=("prod",)),
            SelectorRequirement(key="canary", operator="DoesNotExist", values=()),
            SelectorRequirement(key="team", operator="Exists", values=()),
        ),
    )
    assert selector.matches({"app": "web", "tier": "a", "team": "x"})
    assert selector.matches({"app": "web", "tier": "b", "team": "x", "env": "dev"})
    assert not selector.matches({"app": "web", "tier": "c", "team": "x"})
    assert not selector.matches({"app": "api", "tier": "a", "team": "x"})
    assert not selector.matches({"app": "web", "tier": "a", "team": "x", "env": "prod"})
    assert not selector.matches({"app": "web", "tier": "a", "team": "x", "canary": "1"})
    assert not selector.matches({"app": "web", "tier": "a"})
    assert selector.to_query() == "app=web,tier in (a,b),env notin (prod),!canary,team"


@pytest.mark.parametrize(
    ("destination", "path", "fragment"),
    [
        ({"labels": {"bad key!": "x"}}, "labels[bad key!]", "the name must be at most 63"),
        ({"labels": {"Example.com/x": "y"}}, "labels[Example.com/x]",
         "the prefix before '/' must be a DNS subdomain"),
        ({"labels": {"a": "b" * 64}}, "labels[a]", "must be empty or at most 63"),
        ({"labels": {"a": True}}, "labels[a]", "must be a string, not a boolean"),
        ({"annotations": {"/x": "y"}}, "annotations[/x]", "the prefix before '/'"),
        ({"annotations": {"a": "x" * 300_000}}, "annotations", "over Kubernetes' limit"),
        ({"labels": ["a"]}, "labels", "must be a map of strings, not a list"),
        ({"transformation": {"transformationRefs": [{"name": "shared"}]}},
         "transformation.transformationRefs", "not resolved"),
        ({"transformation": {"templates": {"bad key": {"text": "x"}}}},
         "transformation.templates[bad key]", "invalid Secret data key: must consist of"),
        ({"transformation": {"templates": {"_raw": {"text": "x"}}}},
         "transformation.templates[_raw]", "reserved for the raw Vault response"),
        ({"transformation": {"templates": {"t": "text"}}},
         "transformation.templates[t]", "must be an object with text, not a string"),
        ({"transformation": {"templates": {"t": {}}}},
         "transformation.templates[t].text", "is required (the template)"),
        ({"transformation": {"excludes": "x"}}, "transformation.excludes",
         "must be a list of strings, not a string"),
        ({"transformation": {"excludes": [1]}}, "transformation.excludes[0]",
         "must be a string, not a number"),
        ({"transformation": {"excludes": ["(?<=a"]}}, "transformation.excludes[0]",
         "invalid regular expression: "),
    ],
)
def test_destination_problems(vss: Make, destination: Obj, path: str, fragment: str) -> None:
    found = problems(parse_vault_static_secret,
                     vss(destination={"name": "s", "create": True, **destination}))
    assert fragment in found[f"spec.destination.{path}"]


def test_raw_template_allowed_with_exclude_raw(vss: Make) -> None:
    parse_vault_static_secret(vss(destination={"name": "s", "transformation": {
        "excludeRaw": True, "templates": {"_raw": {"text": "x"}}}}))


def test_labels_without_create_warn(vss: Make) -> None:
    s = parse_vault_static_secret(vss(destination={"name": "s", "labels": {"a": "b"}}))
    assert s.warnings == ("spec.destination.labels, annotations and type apply only with "
                          "create: true; they are ignored",)
    assert parse_vault_static_secret(vss(destination={"name": "s", "type": "Opaque"})).warnings \
        == ()


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"kind": "VaultAuth"}, "kind", "expected VaultStaticSecret, got 'VaultAuth'"),
        ({"metadata": None}, "metadata", "is required"),
        ({"spec": None}, "spec", "is required"),
        ({"spec": "x"}, "spec", "must be an object, not a string"),
    ],
)
def test_object_problems(vss: Make, change: Obj, path: str, message: str) -> None:
    obj = {**vss(), **change}
    assert problems(parse_vault_static_secret, obj)[path] == message


def test_missing_name_and_namespace(vss: Make) -> None:
    obj = vss()
    obj["metadata"] = {}
    with pytest.raises(SpecError) as info:
        parse_vault_static_secret(obj)
    assert info.value.obj == "VaultStaticSecret <no namespace>/<unnamed>"
    assert {p.path for p in info.value.problems} == {"metadata.name", "metadata.namespace"}


# --- VaultAuth ----------------------------------------------------------------------------


def test_token_auth_defaults(auth: Make) -> None:
    a = parse_vault_auth(auth())
    assert (a.namespace, a.name, a.method, a.mount) == ("app", "auth", "token", "token")
    assert a.token is not None
    assert (a.token.secret_ref.name, a.token.secret_ref.key) == ("vault-token", "token")
    assert (a.kubernetes, a.jwt, a.app_role) == (None, None, None)
    assert a.allowed_namespaces is None and a.vault_connection_ref is None


def test_each_method_and_its_default_mount(auth: Make) -> None:
    k = parse_vault_auth(auth(method="kubernetes",
                              kubernetes={"role": "r", "serviceAccount": "sa"}))
    assert k.mount == "kubernetes" and k.kubernetes is not None and k.token is None
    j = parse_vault_auth(auth(method="jwt", jwt={"role": "r", "serviceAccount": "sa"}))
    assert j.mount == "jwt" and j.jwt is not None and j.jwt.secret_ref is None
    r = parse_vault_auth(auth(method="appRole", appRole={"roleId": "id", "secretRef": "s"}))
    assert r.mount == "approle" and r.app_role is not None and r.app_role.role_id == "id"
    assert parse_vault_auth(auth(mount="/custom/")).mount == "custom"


def test_full_vault_auth(auth: Make) -> None:
    a = parse_vault_auth(auth(
        vaultConnectionRef="vault/main", namespace="admin/team", allowedNamespaces=["a", "b"],
        params={"p": "1"}, headers={"X-Team": "a"},
        token={"secretRef": {"name": "t", "key": "vault.token"}},
    ))
    assert a.vault_connection_ref == ObjectRef(namespace="vault", name="main")
    assert a.vault_namespace == "admin/team"
    assert a.allowed_namespaces == ("a", "b")
    assert dict(a.params) == {"p": "1"} and dict(a.headers) == {"X-Team": "a"}
    assert a.token is not None and a.token.secret_ref.key == "vault.token"


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"method": "aws"}, "spec.method",
         "unknown value 'aws': use one of token, kubernetes, jwt, appRole"),
        ({"method": None}, "spec.method", "is required"),
        ({"token": None}, "spec.token", "is required when method is token"),
        ({"token": {"secretRef": {"name": "t", "key": "a b"}}}, "spec.token.secretRef.key",
         "must consist of letters, digits, '-', '_' or '.'"),
        ({"token": {"secretRef": {}}}, "spec.token.secretRef.name",
         "is required (the Secret holding the token)"),
        ({"method": "kubernetes", "kubernetes": {"serviceAccount": "sa"}},
         "spec.kubernetes.role", "is required (the Vault role)"),
        ({"method": "kubernetes", "kubernetes": {"role": "r"}},
         "spec.kubernetes.serviceAccount",
         "is required (a ServiceAccount in the secret's namespace)"),
        ({"method": "kubernetes", "kubernetes": {"role": "r", "serviceAccount": "sa",
                                                 "tokenExpirationSeconds": 60}},
         "spec.kubernetes.tokenExpirationSeconds", "must be at least 600, got 60"),
        ({"method": "jwt", "jwt": {"role": "r"}}, "spec.jwt",
         "set secretRef (a Secret with key jwt) or serviceAccount"),
        ({"method": "appRole", "appRole": {"roleId": "id"}}, "spec.appRole",
         "set exactly one of secretRef (a Secret with key id holding the SecretID) or"
         " secretIDPath (a file holding it)"),
        ({"method": "appRole", "appRole": {"roleId": "id", "secretRef": "s",
                                           "secretIDPath": "/x"}}, "spec.appRole",
         "set exactly one of secretRef (a Secret with key id holding the SecretID) or"
         " secretIDPath (a file holding it)"),
        ({"method": "appRole", "appRole": {"roleId": "id", "secretIDPath": "/a/../etc/x"}},
         "spec.appRole.secretIDPath", "'/a/../etc/x' must be an absolute path without '..'"),
        ({"allowedNamespaces": ["*", "a"]}, "spec.allowedNamespaces",
         "'*' allows every namespace and must be the only entry"),
        ({"allowedNamespaces": ["Bad"]}, "spec.allowedNamespaces[0]",
         "'Bad' is not a valid namespace: use at most 63 lowercase letters, digits and '-', "
         "starting and ending with a letter or digit"),
        ({"headers": {"X-Vault-Token": "hvs.x"}}, "spec.headers[X-Vault-Token]",
         "a Vault token must not sit in a resource; the VaultAuth logs in and supplies it"),
        ({"headers": {"Bad Header": "x"}}, "spec.headers[Bad Header]",
         "is not a valid HTTP header name"),
        ({"headers": {"X-A": "a\r\nX-B: b"}}, "spec.headers[X-A]",
         "a header value must not contain line breaks"),
        ({"vaultConnectionRef": "a/b/c"}, "spec.vaultConnectionRef",
         "invalid reference 'a/b/c': use <name> or <namespace>/<name>"),
    ],
)
def test_vault_auth_problems(auth: Make, spec: Obj, path: str, message: str) -> None:
    found = problems(parse_vault_auth, auth(**spec))
    assert found[path] == message
    assert "VaultAuth app/auth" in str(SpecError(obj="VaultAuth app/auth", problems=()))


def test_allowed_namespaces_as_vso() -> None:
    def allows(name: str, namespace: str, allowed: list[str] | None, target: str) -> bool:
        spec = {"method": "token", "token": {"secretRef": {"name": "t"}}}
        if allowed is not None:
            spec["allowedNamespaces"] = allowed
        obj = {"kind": "VaultAuth", "metadata": {"name": name, "namespace": namespace},
               "spec": spec}
        return parse_vault_auth(obj).allows(target, operator_namespace="vault-syncd")

    assert allows("a", "team", None, "team")
    assert not allows("a", "team", None, "other")
    assert not allows("a", "team", [], "other")
    assert allows("a", "team", ["other"], "other")
    assert not allows("a", "team", ["other"], "third")
    assert allows("a", "team", ["*"], "anything")
    assert allows("default", "vault-syncd", None, "anything")
    assert not allows("default", "team", None, "anything")


# --- VaultConnection ----------------------------------------------------------------------


def test_full_connection(connection: Make) -> None:
    c = parse_vault_connection(connection(
        address="https://vault.example.com:8200/", caCertSecretRef="vault-ca",
        tlsServerName="vault.internal", skipTLSVerify=True, timeout="1.5m",
        headers={"X-Team": "a"}))
    assert c.address == "https://vault.example.com:8200"
    assert c.ca_cert_secret_ref == "vault-ca" and c.tls_server_name == "vault.internal"
    assert c.skip_tls_verify and c.timeout_seconds == 90
    assert dict(c.headers) == {"X-Team": "a"}
    assert (c.namespace, c.name, c.generation) == ("app", "default", 1)


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"address": None}, "spec.address",
         "is required (the Vault URL, e.g. https://vault.vault.svc:8200)"),
        ({"address": "vault:8200"}, "spec.address", "must be an http:// or https:// URL"),
        ({"address": "ftp://vault"}, "spec.address", "must be an http:// or https:// URL"),
        ({"address": "https://"}, "spec.address", "must be an http:// or https:// URL"),
        ({"address": "https://u:p@vault"}, "spec.address", "must not hold credentials"),
        ({"address": "https://vault?x=1"}, "spec.address", "must not have a query"),
        ({"address": "https://vault:port"}, "spec.address", "is not a valid URL"),
        ({"timeout": "10"}, "spec.timeout", "invalid duration '10'"),
        ({"timeout": "0s"}, "spec.timeout", "too short"),
        ({"caCertSecretRef": "CA"}, "spec.caCertSecretRef", "'CA' is not a valid name"),
        ({"skipTLSVerify": "true"}, "spec.skipTLSVerify", "must be true or false"),
    ],
)
def test_connection_problems(connection: Make, spec: Obj, path: str, fragment: str) -> None:
    assert fragment in problems(parse_vault_connection, connection(**spec))[path]
