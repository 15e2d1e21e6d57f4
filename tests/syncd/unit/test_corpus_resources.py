"""The resource corpus (tests/corpus/resources/), every case at the layer that refuses it.

A ``schema`` case goes through the CRD's schema as the API server applies it (strict field
validation, then defaults, then validation; the testbed's implementation, which
tests/syncd/e2e/test_corpus.py checks against kubectl): it must be refused, naming the field. A
``syncd`` case must pass that schema (else it tests nothing syncd does) and be refused by
syncd's parsing, exactly as the controller runs it (a VaultAuthGlobal merged into a VaultAuth
that refers to it, SecretTransformations folded into a VaultStaticSecret): one error naming the
object and the field, short whatever the input's size, and never showing the values the case
lists as secret. A ``render`` case must parse, and be stopped by syncd's template workers (as
the controller renders, with the deadline and memory bound syncd runs with) with a
RenderError naming the template's key, never the secret value it was rendered with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.auth_globals import GlobalError, merge_auth_global
from syncd.dynamic_specs import parse_vault_dynamic_secret
from syncd.pki_specs import parse_vault_pki_secret
from syncd.rendering import RenderError, render
from syncd.spec_parts import SpecError, subdomain_problem
from syncd.specs import parse_vault_auth, parse_vault_connection, parse_vault_static_secret
from syncd.template_pool import MIB, TemplatePool
from syncd.transformations import TransformationError, resolve_transformation_refs
from testbed.kube.crds import types_for
from tests.corpus.cases import ResourceCase, resource_cases

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_NS = "vault-syncd"
#: A refusal is read in a condition, an Event, a log line: whatever the input, it stays short.
MAX_MESSAGE = 1024
Obj = dict[str, Any]
WRITERS = ("VaultStaticSecret", "VaultDynamicSecret", "VaultPKISecret")


def _schemas() -> dict[str, Any]:
    out = {}
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        [resource_type] = types_for(crd)
        out[crd["spec"]["names"]["kind"]] = resource_type.custom
    return out


SCHEMAS = _schemas()


def admission_errors(obj: Obj) -> list[str]:
    """What the API server says about ``obj`` (``kubectl apply --validate=strict``)."""
    custom = SCHEMAS[obj["kind"]]
    pruned, unknown = custom.prune(copy.deepcopy(obj))
    if unknown:
        return [f'unknown field "{u}"' for u in unknown]
    return [str(e) for e in custom.validate(custom.default(pruned))]


def _vss_using(transformation: Obj) -> Obj:
    meta = transformation["metadata"]
    return {"apiVersion": transformation["apiVersion"], "kind": "VaultStaticSecret",
            "metadata": {"name": "uses-it", "namespace": meta["namespace"]},
            "spec": {"mount": "secret", "path": "app/db", "type": "kv-v2", "destination": {
                "name": "uses-it", "create": True,
                "transformation": {"transformationRefs": [{"name": meta["name"]}]}}}}


def _auth_using(auth_global: Obj) -> Obj:
    meta = auth_global["metadata"]
    return {"apiVersion": auth_global["apiVersion"], "kind": "VaultAuth",
            "metadata": {"name": "uses-it", "namespace": meta["namespace"], "uid": "u"},
            "spec": {"vaultAuthGlobalRef": {"name": meta["name"]}}}


def _lookup(*objects: Obj) -> Callable[[str, str], Obj | None]:
    found = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
    return lambda namespace, name: found.get((namespace, name))


def syncd_refusal(obj: Obj) -> tuple[str, str, list[str]]:
    """How syncd refuses ``obj``: (condition reason, message, field paths named); as the
    controller parses it (syncd.controller: _parse, resolve)."""
    kind, lookup = obj["kind"], _lookup(obj)
    parse: Callable[[Obj], Any]
    invalid = {"VaultConnection": "VaultConnectionInvalid", "VaultAuth": "VaultAuthInvalid",
               "VaultAuthGlobal": "VaultAuthInvalid"}.get(kind, "InvalidSpec")
    if kind in ("VaultAuth", "VaultAuthGlobal"):
        auth = obj if kind == "VaultAuth" else _auth_using(obj)
        parse = lambda o: parse_vault_auth(merge_auth_global(  # noqa: E731
            o, lookup=lookup, operator_namespace=OPERATOR_NS))
        obj = auth
    elif kind == "VaultConnection":
        parse = parse_vault_connection
    else:
        secret = _vss_using(obj) if kind == "SecretTransformation" else obj
        parser = {"VaultDynamicSecret": parse_vault_dynamic_secret,
                  "VaultPKISecret": parse_vault_pki_secret}.get(secret["kind"],
                                                                 parse_vault_static_secret)
        parse = lambda o: parser(resolve_transformation_refs(  # noqa: E731
            o, lookup=lookup, operator_namespace=OPERATOR_NS))
        obj = secret
    try:
        parse(obj)
    except SpecError as exc:
        return invalid, str(exc), [p.path for p in exc.problems]
    except (GlobalError, TransformationError) as exc:
        return exc.reason, str(exc), []
    pytest.fail(f"syncd accepted {kind} {obj['metadata']['name']}")


@pytest.mark.parametrize("case", resource_cases("schema"), ids=lambda c: c.id)
def test_the_schema_refuses(case: ResourceCase) -> None:
    assert subdomain_problem(case.resource["metadata"]["name"]) is None  # refused for its field
    errors = admission_errors(case.resource)
    assert errors, f"{case.id} ({case.about}) passes the CRD schema"
    named = [e for e in errors if case.field in e]
    assert named, (case.field, errors)
    assert any(case.says in e for e in named), (case.says, named)


@pytest.mark.parametrize("case", resource_cases("syncd"), ids=lambda c: c.id)
def test_syncd_refuses_what_the_schema_lets_through(case: ResourceCase) -> None:
    assert subdomain_problem(case.resource["metadata"]["name"]) is None
    assert admission_errors(case.resource) == [], f"{case.id}: the schema refuses it already"
    reason, message, fields = syncd_refusal(case.resource)
    assert reason == case.reason, message
    meta = case.resource["metadata"]
    # The object at fault is named: a VaultConnection or VaultAuth in the condition of the
    # object that uses it, a VaultAuthGlobal or SecretTransformation in that of the VaultAuth
    # or VaultStaticSecret that took it in (an object's own condition may name just the field).
    if not (case.kind in WRITERS and case.reason != "InvalidSpec"):
        assert f"{case.kind} {meta['namespace']}/{meta['name']}" in message, message
    if fields and case.kind in ("VaultConnection", "VaultAuth", *WRITERS):
        assert case.field in fields, (case.field, message)
    else:
        assert case.field in message, (case.field, message)
    assert case.says in message, (case.says, message)
    assert len(message) <= MAX_MESSAGE, f"{len(message)} characters: {message[:300]}..."
    for value in case.never:
        assert value not in message


@pytest.mark.parametrize("case", resource_cases("render"), ids=lambda c: c.id)
async def test_syncd_stops_the_template_when_rendered(case: ResourceCase) -> None:
    assert admission_errors(case.resource) == []
    spec = parse_vault_static_secret(case.resource)
    # One worker, a short deadline: syncd's bounds (--template-deadline 1 s, 24 MiB), faster.
    pool = TemplatePool(workers=1, deadline=0.5, memory=24 * MIB)
    try:
        with pytest.raises(RenderError) as info:
            await render(kv_type=spec.kv_type, data={"data": case.vault, "metadata": {}},
                         templates=pool, transformation=spec.destination.transformation,
                         tenant=spec.namespace)
    finally:
        await pool.close()
    message = str(info.value)
    assert info.value.reason == case.reason, message
    assert case.field in message and case.says in message, message
    assert len(message) <= MAX_MESSAGE
    for value in case.never:
        assert value not in message
