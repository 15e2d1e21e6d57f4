"""The CRDs: structural schemas, defaults, and agreement with syncd/specs.py in both directions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from syncd import specs
from syncd.auth_globals import VAULT_AUTH_GLOBAL, merge_auth_global
from syncd.durations import DURATION_PATTERN
from syncd.transformations import SECRET_TRANSFORMATION

Obj = dict[str, Any]
KINDS = {k.kind: k for k in (specs.VAULT_CONNECTION, specs.VAULT_AUTH, specs.VAULT_STATIC_SECRET,
                             VAULT_AUTH_GLOBAL, SECRET_TRANSFORMATION)}
PARSERS: dict[str, Callable[[Any], Any]] = {
    "VaultConnection": specs.parse_vault_connection,
    # As the controller reads one: through the VaultAuthGlobal merge (none here).
    "VaultAuth": lambda obj: specs.parse_vault_auth(merge_auth_global(
        obj, lookup=lambda ns, name: None, operator_namespace="vault-syncd")),
    "VaultStaticSecret": specs.parse_vault_static_secret,
}

# Declared for VSO manifests to apply under kubectl's strict field validation, and ignored.
IGNORED = {
    ("VaultStaticSecret", "spec.syncConfig"),
    ("VaultStaticSecret", "spec.syncConfig.instantUpdates"),
    ("VaultStaticSecret", "spec.destination.transformation.templates.*.name"),
    ("VaultAuth", "spec.storageEncryption"),
    # Read by syncd.auth_globals before parsing (tests/syncd/unit/test_auth_globals_...).
    ("VaultAuth", "spec.vaultAuthGlobalRef.name"),
    ("VaultAuth", "spec.vaultAuthGlobalRef.namespace"),
    ("VaultAuth", "spec.vaultAuthGlobalRef.allowDefault"),
    ("VaultAuth", "spec.vaultAuthGlobalRef.mergeStrategy"),
    ("VaultAuth", "spec.vaultAuthGlobalRef.mergeStrategy.headers"),
    ("VaultAuth", "spec.vaultAuthGlobalRef.mergeStrategy.params"),
    # Read by syncd.transformations before parsing.
    *(("VaultStaticSecret", f"spec.destination.transformation.transformationRefs[].{f}")
      for f in ("namespace", "name", "templateRefs", "templateRefs[].name",
                "templateRefs[].keyOverride", "ignoreIncludes", "ignoreExcludes")),
}


def schema(crd: Obj) -> Obj:
    version = crd["spec"]["versions"][0]
    result: Obj = version["schema"]["openAPIV3Schema"]
    return result


def walk(node: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


# --- shape --------------------------------------------------------------------------------


def test_five_crds_with_the_names_the_code_uses(crds: dict[str, Obj]) -> None:
    assert set(crds) == set(KINDS)
    short = {"VaultConnection": ["vc"], "VaultAuth": ["va"], "VaultStaticSecret": ["vss"],
             "VaultAuthGlobal": ["vag"], "SecretTransformation": ["st"]}
    for kind, crd in crds.items():
        names = crd["spec"]["names"]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["spec"]["group"] == specs.GROUP == "secrets.vault-syncd.dev"
        assert names["plural"] == KINDS[kind].plural
        assert crd["metadata"]["name"] == f"{names['plural']}.{specs.GROUP}"
        assert names["shortNames"] == short[kind]
        assert names["singular"] == kind.lower()
        assert crd["spec"]["scope"] == "Namespaced"
        [version] = crd["spec"]["versions"]
        assert version["name"] == specs.VERSION and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        assert KINDS[kind].api_version == "secrets.vault-syncd.dev/v1beta1"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structural_schema(crds: dict[str, Obj], kind: str) -> None:
    root = schema(crds[kind])
    for path, node in walk(root):
        assert "type" in node, f"{kind} {path or '<root>'}: no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{kind} {path}: array without items"
        if node["type"] == "object" and path != "metadata":
            assert ("properties" in node or "additionalProperties" in node
                    or node.get("x-kubernetes-preserve-unknown-fields")), f"{kind} {path}"
        for key in node.get("required") or []:
            assert key in node["properties"], f"{kind} {path}: required {key} undeclared"
        if "default" in node:
            check_value(node["default"], node, f"{kind} {path}")
        if "pattern" in node:
            re.compile(node["pattern"])
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


def check_value(value: Any, node: Obj, where: str) -> None:
    types = {"string": str, "boolean": bool, "integer": int, "object": dict, "array": list}
    assert isinstance(value, types[node["type"]]), where
    if "enum" in node:
        assert value in node["enum"], where
    if "pattern" in node:
        assert re.search(node["pattern"], str(value)), where
    if "minimum" in node:
        assert value >= node["minimum"], where


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_printer_columns_point_at_declared_fields(crds: dict[str, Obj], kind: str) -> None:
    declared = {path for path, _ in walk(schema(crds[kind]))}
    columns = crds[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[-1]["name"] == "Age"
    for column in columns:
        path = re.sub(r"\[\?\(.*?\)\]", "[]", column["jsonPath"]).lstrip(".")
        assert path.startswith("metadata.") or path in declared, column


def test_ready_synced_source_version_columns(crds: dict[str, Obj]) -> None:
    names = [c["name"] for c in
             crds["VaultStaticSecret"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert names[:3] == ["Ready", "Synced", "Source version"]


def test_constants_agree_with_the_schemas(crds: dict[str, Obj]) -> None:
    vss = schema(crds["VaultStaticSecret"])["properties"]["spec"]["properties"]
    assert vss["refreshAfter"]["pattern"] == DURATION_PATTERN
    assert vss["refreshAfter"]["default"] == specs.DEFAULT_REFRESH_AFTER
    assert vss["type"]["enum"] == list(specs.KV_TYPES)
    assert set(vss["rolloutRestartTargets"]["items"]["properties"]["kind"]["enum"]) \
        == set(specs.TARGET_KINDS)
    connection = schema(crds["VaultConnection"])["properties"]["spec"]["properties"]
    assert connection["timeout"]["pattern"] == DURATION_PATTERN
    auth = schema(crds["VaultAuth"])["properties"]["spec"]["properties"]
    assert auth["method"]["enum"] == list(specs.AUTH_METHODS)
    for block in ("kubernetes", "jwt"):
        expiry = auth[block]["properties"]["tokenExpirationSeconds"]
        assert expiry["default"] == expiry["minimum"] == specs.MIN_TOKEN_EXPIRATION_SECONDS


# --- defaults: the schema's and the parser's are the same ---------------------------------


def test_defaults_applied_by_the_server_change_nothing(
    crds: dict[str, Obj], defaulted: Callable[[Obj], Obj], vss: Callable[..., Obj],
    auth: Callable[..., Obj], connection: Callable[..., Obj],
) -> None:
    minimal = [
        vss(destination={"name": "s", "transformation": {"templates": {"t": {"text": "x"}}}},
            rolloutRestartTargets=[{"kind": "Deployment", "name": "web"}]),
        auth(),
        auth(method="kubernetes", kubernetes={"role": "r", "serviceAccount": "default"}),
        auth(method="jwt", jwt={"role": "r", "secretRef": "jwt"}),
        connection(),
    ]
    for obj in minimal:
        stored = defaulted(obj)
        assert stored != obj  # the schema does default something in each
        parse = PARSERS[obj["kind"]]
        assert parse(stored) == parse(obj), obj["kind"]


def test_vss_schema_defaults(defaulted: Callable[[Obj], Obj], vss: Callable[..., Obj]) -> None:
    spec = defaulted(vss())["spec"]
    assert spec["refreshAfter"] == "60s"
    assert spec["hmacSecretData"] is True
    assert spec["deletionPolicy"] == "Delete"
    assert spec["destination"]["create"] is False
    assert spec["destination"]["overwrite"] is False


# --- the parser reads only declared fields, and reads all but the ignored ones ------------


class Recording(Mapping[str, Any]):
    """A mapping that notes the schema path of every key looked up in it."""

    def __init__(self, data: Mapping[str, Any], path: str, seen: set[str]) -> None:
        self._data, self._path, self._seen = data, path, seen

    def __getitem__(self, key: str) -> Any:
        path = f"{self._path}.{key}" if self._path else key
        self._seen.add(path)
        return wrap(self._data[key], path, self._seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def wrap(value: Any, path: str, seen: set[str]) -> Any:
    if isinstance(value, Mapping):
        return Recording(value, path, seen)
    if isinstance(value, list):
        return [wrap(v, f"{path}[]", seen) for v in value]
    return value


def resolve(root: Obj, path: str) -> Obj | None:
    """The schema node of a recorded path (map keys resolve through additionalProperties)."""
    node: Obj | None = root
    for part in re.findall(r"[^.\[\]]+|\[\]", path):
        if node is None:
            return None
        if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
            return node
        if part == "[]":
            node = node.get("items")
        elif part in (node.get("properties") or {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def normalize(root: Obj, path: str) -> str:
    """A recorded path with map keys replaced by ``*``, as :func:`walk` names them."""
    out, node = [], root
    for part in re.findall(r"[^.\[\]]+|\[\]", path):
        if part == "[]":
            out.append("[]")
            node = node.get("items") or {}
        elif part in (node.get("properties") or {}):
            out.append(f".{part}")
            node = node["properties"][part]
        else:
            out.append(".*")
            node = node.get("additionalProperties") or {}
    return "".join(out).lstrip(".")


FULL: dict[str, list[Any]] = {
    "VaultStaticSecret": [{
        "vaultAuthRef": "auth", "namespace": "ns1", "mount": "kv", "path": "p", "type": "kv-v2",
        "version": 3, "refreshAfter": "1m", "hmacSecretData": True,
        "destination": {
            "name": "s", "create": True, "overwrite": True, "labels": {"a": "b"},
            "annotations": {"c": "d"}, "type": "Opaque",
            "transformation": {
                "templates": {"t": {"name": "n", "text": "{{ .Secrets.a }}"}},
                "includes": ["a"], "excludes": ["b"], "excludeRaw": True,
                "transformationRefs": [],
            },
        },
        "rolloutRestartTargets": [
            {"kind": "Deployment", "name": "web"},
            {"kind": "StatefulSet", "selector": {
                "matchLabels": {"app": "db"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}},
            {"auto": True, "kind": "DaemonSet"},
        ],
        "deletionPolicy": "Retain", "syncConfig": {"instantUpdates": False},
    }],
    "VaultAuth": [
        {"method": method, "mount": "m", "namespace": "ns1", "vaultConnectionRef": "c",
         "allowedNamespaces": ["a"], "params": {"p": "v"}, "headers": {"X-H": "v"},
         "vaultAuthGlobalRef": None, **block}
        for method, block in list[tuple[str, Obj]]([
            ("token", {"token": {"secretRef": {"name": "t", "key": "k"}}}),
            ("kubernetes", {"kubernetes": {"role": "r", "serviceAccount": "sa",
                                           "audiences": ["vault"],
                                           "tokenExpirationSeconds": 900}}),
            ("jwt", {"jwt": {"role": "r", "secretRef": "j", "serviceAccount": "sa",
                             "audiences": ["vault"], "tokenExpirationSeconds": 900}}),
            ("appRole", {"appRole": {"roleId": "id", "secretRef": "s"}}),
        ])
    ],
    "VaultConnection": [{
        "address": "https://vault:8200", "caCertSecretRef": "ca", "tlsServerName": "vault",
        "skipTLSVerify": False, "timeout": "10s", "headers": {"X-H": "v"},
    }, {"address": "https://vault:8200", "caCertPath": "/etc/vault/ca.crt"}],
}


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_parser_and_schema_agree(crds: dict[str, Obj], kind: str) -> None:
    root = schema(crds[kind])
    seen: set[str] = set()
    for spec in FULL[kind]:
        obj = {"apiVersion": KINDS[kind].api_version, "kind": kind,
               "metadata": {"name": "x", "namespace": "app"}, "spec": spec}
        PARSERS[kind](wrap(obj, "", seen))
    read = {p for p in seen if p.split(".")[0] not in ("metadata", "kind", "apiVersion")}

    undeclared = sorted(p for p in read if resolve(root, p) is None)
    assert not undeclared, f"the parser reads fields the CRD does not declare: {undeclared}"

    read_normalized = {normalize(root, p) for p in read}
    declared = {path for path, _ in walk(root) if path.startswith("spec.")}
    # List items of strings are read by iterating, which the recording does not see.
    never_read = sorted(p for p in declared - read_normalized
                        if (kind, p) not in IGNORED and not p.endswith("[]"))
    assert not never_read, f"the CRD declares fields the parser never reads: {never_read}"
