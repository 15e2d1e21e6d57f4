"""VaultAuthGlobal merging and SecretTransformation resolution, as VSO defines them."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.auth_globals import GlobalError, merge_auth_global
from syncd.specs import parse_vault_auth, parse_vault_static_secret
from syncd.templating import JINJA2_MARKER
from syncd.transformations import TransformationError, resolve_transformation_refs

GV = "secrets.vault-syncd.dev/v1beta1"
OPERATOR_NS = "vault-syncd"
Obj = dict[str, Any]


def _auth(ns: str = "app", **spec: Any) -> Obj:
    return {"apiVersion": GV, "kind": "VaultAuth",
            "metadata": {"name": "a", "namespace": ns, "uid": "u1", "generation": 1},
            "spec": spec}


def _global(name: str = "g", ns: str = "app", **spec: Any) -> Obj:
    return {"apiVersion": GV, "kind": "VaultAuthGlobal",
            "metadata": {"name": name, "namespace": ns, "uid": f"g-{ns}-{name}",
                         "generation": 3}, "spec": spec}


def _merge(auth: Obj, *globals_: Obj) -> Obj:
    found = {(g["metadata"]["namespace"], g["metadata"]["name"]): g for g in globals_}
    return merge_auth_global(auth, lookup=lambda ns, n: found.get((ns, n)),
                             operator_namespace=OPERATOR_NS)


GLOBAL = _global(
    defaultAuthMethod="kubernetes", defaultMount="k8s-default", defaultVaultNamespace="tenant",
    vaultConnectionRef="vault-syncd/default",
    params={"p": "global", "only-global": "1"}, headers={"X-Global": "1", "X-Both": "global"},
    kubernetes={"role": "global-role", "serviceAccount": "global-sa", "audiences": ["vault"],
                "mount": "k8s-method", "params": {"p": "method"},
                "headers": {"X-Method": "1", "X-Both": "method"}},
)


def test_defaults_fill_what_the_vault_auth_leaves_unset() -> None:
    merged = _merge(_auth(vaultAuthGlobalRef={"name": "g"},
                          kubernetes={"serviceAccount": "mine"}), GLOBAL)
    auth = parse_vault_auth(merged)
    assert auth.method == "kubernetes"
    assert auth.kubernetes is not None
    assert (auth.kubernetes.role, auth.kubernetes.service_account) == ("global-role", "mine")
    assert auth.mount == "k8s-method"  # the method block's mount before defaultMount
    assert auth.vault_namespace == "tenant"
    assert str(auth.vault_connection_ref) == "vault-syncd/default"
    # mergeStrategy none (the default): the VaultAuth's own params and headers only.
    assert dict(auth.params) == {} and dict(auth.headers) == {}
    # A changed global (another generation) is another client.
    assert merged["metadata"]["uid"] == "u1+g-app-g@3"


@pytest.mark.parametrize(("strategy", "own", "expected"), [
    ("union", {"X-Both": "mine"},
     {"X-Global": "1", "X-Method": "1", "X-Both": "mine"}),
    ("union", {}, {"X-Global": "1", "X-Method": "1", "X-Both": "method"}),
    ("replace", {"X-Mine": "1"}, {"X-Mine": "1"}),
    ("replace", {}, {"X-Method": "1", "X-Both": "method"}),
    ("none", {"X-Mine": "1"}, {"X-Mine": "1"}),
])
def test_header_merge_strategies(strategy: str, own: dict[str, str],
                                 expected: dict[str, str]) -> None:
    merged = _merge(_auth(vaultAuthGlobalRef={"name": "g", "mergeStrategy": {
        "headers": strategy, "params": strategy}}, headers=own, params=own), GLOBAL)
    auth = parse_vault_auth(merged)
    assert dict(auth.headers) == expected
    assert dict(auth.params) == {  # the same rule on the params layers
        "union": {"p": "method", "only-global": "1", **own},
        "replace": own or {"p": "method"},
        "none": own,
    }[strategy]


def test_default_global_search_order() -> None:
    own = _global("default", "app", defaultAuthMethod="jwt",
                  jwt={"role": "own", "serviceAccount": "sa"})
    operators = _global("default", OPERATOR_NS, defaultAuthMethod="appRole",
                        appRole={"roleId": "r", "secretRef": "s"})
    ref = {"allowDefault": True}
    assert _merge(_auth(vaultAuthGlobalRef=ref), own, operators)["spec"]["method"] == "jwt"
    assert _merge(_auth(vaultAuthGlobalRef=ref), operators)["spec"]["method"] == "appRole"
    with pytest.raises(GlobalError, match=r"spec\.vaultAuthGlobalRef\.name: is required"):
        _merge(_auth(vaultAuthGlobalRef={}), own)


def test_tenant_boundary_of_allowed_namespaces() -> None:
    elsewhere = _global("g", "team-a", defaultAuthMethod="kubernetes",
                        kubernetes={"role": "r", "serviceAccount": "s"})
    ref = {"name": "g", "namespace": "team-a"}
    with pytest.raises(GlobalError) as refused:
        _merge(_auth(vaultAuthGlobalRef=ref), elsewhere)
    assert refused.value.reason == "VaultAuthGlobalNotAllowed"
    assert "VaultAuthGlobal team-a/g does not allow namespace app" in str(refused.value)
    elsewhere["spec"]["allowedNamespaces"] = ["app"]
    assert _merge(_auth(vaultAuthGlobalRef=ref), elsewhere)["spec"]["method"] == "kubernetes"
    elsewhere["spec"]["allowedNamespaces"] = ["*"]
    assert _merge(_auth(vaultAuthGlobalRef=ref), elsewhere)["spec"]["method"] == "kubernetes"


@pytest.mark.parametrize(("auth", "message"), [
    (_auth(vaultAuthGlobalRef={"name": "missing"}), "VaultAuthGlobal app/missing not found"),
    (_auth(vaultAuthGlobalRef={"name": "bare"}), "spec.method is not set and VaultAuthGlobal"
                                                  " app/bare has no defaultAuthMethod"),
    (_auth(vaultAuthGlobalRef={"name": "bare"}, method="jwt"),
     "method jwt is configured neither in spec.jwt nor in VaultAuthGlobal app/bare"),
    (_auth(vaultAuthGlobalRef={"name": "g", "mergeStrategy": {"params": "merge"}}),
     "spec.vaultAuthGlobalRef.mergeStrategy.params: unknown value 'merge'"),
])
def test_merge_errors_name_the_field(auth: Obj, message: str) -> None:
    with pytest.raises(GlobalError, match=message.replace(".", r"\.")):
        _merge(auth, GLOBAL, _global("bare"))


# --- SecretTransformation -----------------------------------------------------------------


def _vss(**transformation: Any) -> Obj:
    return {"apiVersion": GV, "kind": "VaultStaticSecret",
            "metadata": {"name": "web", "namespace": "app", "uid": "v", "generation": 1},
            "spec": {"mount": "secret", "path": "web", "type": "kv-v2",
                     "destination": {"name": "web", "create": True,
                                     "transformation": transformation}}}


def _st(name: str, ns: str = "app", **spec: Any) -> Obj:
    return {"apiVersion": GV, "kind": "SecretTransformation",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


SHARED = _st("shared", templates={"url": {"text": '{{ "shared-url" }}'},
                                  "dsn": {"text": '{{ "shared-dsn" }}'}},
             sourceTemplates=[{"name": "helpers",
                               "text": '{{- define "greeting" -}}hi{{- end -}}'}],
             includes=["^user$"], excludes=["^internal"])
OTHER = _st("other", templates={"url": {"text": '{{ "other-url" }}'},
                                "extra": {"text": '{{ "other-extra" }}'}}, includes=["^pass"])


def _resolve(vss: Obj, *sts: Obj) -> Obj:
    found = {(t["metadata"]["namespace"], t["metadata"]["name"]): t for t in sts}
    return resolve_transformation_refs(vss, lookup=lambda ns, n: found.get((ns, n)),
                                       operator_namespace=OPERATOR_NS)


def _transformation(obj: Obj) -> dict[str, Any]:
    return dict(obj["spec"]["destination"]["transformation"])


def test_precedence_inline_first_then_refs_in_order() -> None:
    resolved = _transformation(_resolve(_vss(
        templates={"dsn": {"text": '{{ "inline" }}'}}, includes=["^own$"],
        transformationRefs=[{"name": "shared"}, {"name": "other"}]), SHARED, OTHER))
    texts = {k: v["text"] for k, v in resolved["templates"].items()}
    prefix = '{{- define "greeting" -}}hi{{- end -}}'
    assert texts == {"dsn": prefix + '{{ "inline" }}', "url": prefix + '{{ "shared-url" }}',
                     "extra": prefix + '{{ "other-extra" }}'}
    assert resolved["includes"] == ["^own$", "^user$", "^pass"]
    assert resolved["excludes"] == ["^internal"]
    assert "transformationRefs" not in resolved
    # What comes out parses as any inline transformation does.
    parse_vault_static_secret(_resolve(_vss(transformationRefs=[{"name": "shared"}]), SHARED))


def test_source_templates_go_after_a_jinja2_marker() -> None:
    jinja_sources = _st("macros", templates={}, sourceTemplates=[
        {"text": "{% macro hi() %}hi{% endmacro %}"}])
    resolved = _transformation(_resolve(_vss(
        templates={"j": {"text": JINJA2_MARKER + "\n{{ hi() }}"}},
        transformationRefs=[{"name": "macros"}]), jinja_sources))
    assert resolved["templates"]["j"]["text"] == (
        JINJA2_MARKER + "\n{% macro hi() %}hi{% endmacro %}{{ hi() }}")
    parse_vault_static_secret(_resolve(_vss(
        templates={"j": {"text": JINJA2_MARKER + "\n{{ hi() }}"}},
        transformationRefs=[{"name": "macros"}]), jinja_sources))


def test_template_refs_key_override_and_ignores() -> None:
    resolved = _transformation(_resolve(_vss(transformationRefs=[{
        "name": "shared", "templateRefs": [{"name": "url", "keyOverride": "endpoint"}],
        "ignoreIncludes": True, "ignoreExcludes": True}]), SHARED))
    assert set(resolved["templates"]) == {"endpoint"}
    assert resolved["includes"] == [] and resolved["excludes"] == []


@pytest.mark.parametrize(("refs", "reason", "message"), [
    ([{"name": "ghost"}], "TransformationNotFound",
     "transformationRefs[0]: SecretTransformation app/ghost not found"),
    ([{"name": "shared", "templateRefs": [{"name": "nope"}]}], "InvalidSpec",
     "transformationRefs[0].templateRefs[0].name: template 'nope' not found"),
    ([{"name": "shared"}, {"name": "shared"}], "InvalidSpec", "referenced twice"),
    ([{"name": "theirs", "namespace": "team-b"}], "TransformationNotAllowed",
     "transformationRefs[0].namespace: SecretTransformation team-b/theirs is in another"),
    ([{"name": "shared", "templateRefs": [{"name": "url", "keyOverride": "dsn"}]}],
     "InvalidSpec", "key 'dsn' already has a template"),
])
def test_reference_errors_name_the_field(refs: list[Obj], reason: str, message: str) -> None:
    with pytest.raises(TransformationError) as refused:
        _resolve(_vss(templates={"dsn": {"text": "x"}}, transformationRefs=refs), SHARED,
                 _st("theirs", "team-b", templates={"x": {"text": "y"}}))
    assert refused.value.reason == reason
    assert message in str(refused.value)


def test_operator_namespace_transformations_are_shared() -> None:
    library = _st("library", OPERATOR_NS, templates={"k": {"text": "v"}})
    resolved = _transformation(_resolve(
        _vss(transformationRefs=[{"name": "library", "namespace": OPERATOR_NS}]), library))
    assert set(resolved["templates"]) == {"k"}
