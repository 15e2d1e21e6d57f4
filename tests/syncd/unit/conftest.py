"""Fixtures for the engine-independent parts of syncd: the CRDs and manifest builders."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(__file__).resolve().parents[3] / "manifests" / "crds"

Obj = dict[str, Any]


@pytest.fixture(scope="session")
def crds() -> dict[str, Obj]:
    """Every CRD in manifests/crds, by kind."""
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd
    return out


def _apply_defaults(value: Any, schema: Obj) -> Any:
    """What the API server does with ``default``: fill in missing properties, recursively."""
    if isinstance(value, dict):
        out = dict(value)
        for key, child in (schema.get("properties") or {}).items():
            if key not in out and "default" in child:
                out[key] = copy.deepcopy(child["default"])
        for key, sub in out.items():
            child = (schema.get("properties") or {}).get(key)
            if child is None and isinstance(schema.get("additionalProperties"), dict):
                child = schema["additionalProperties"]
            if child is not None and sub is not None:
                out[key] = _apply_defaults(sub, child)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(v, schema["items"]) for v in value]
    return value


@pytest.fixture(scope="session")
def defaulted(crds: dict[str, Obj]) -> Callable[[Obj], Obj]:
    """``obj`` as the API server stores it: with its CRD's schema defaults applied."""

    def apply(obj: Obj) -> Obj:
        schema = crds[obj["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        result: Obj = _apply_defaults(obj, schema)
        return result

    return apply


def _manifest(kind: str, spec: Obj, *, name: str = "web", namespace: str = "app",
             **metadata: Any) -> Obj:
    return {
        "apiVersion": "secrets.vault-syncd.dev/v1beta1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "uid": "u-1",
                     **metadata},
        "spec": copy.deepcopy(spec),
    }


@pytest.fixture
def vss() -> Callable[..., Obj]:
    """A minimal valid VaultStaticSecret; keyword arguments replace top-level spec fields."""

    def make(**spec: Any) -> Obj:
        base: Obj = {"type": "kv-v2", "mount": "secret", "path": "app/config",
                     "destination": {"name": "app-config"}}
        base.update(spec)
        return _manifest("VaultStaticSecret", base)

    return make


@pytest.fixture
def auth() -> Callable[..., Obj]:
    """A VaultAuth of the token method; keyword arguments replace top-level spec fields."""

    def make(**spec: Any) -> Obj:
        base: Obj = {"method": "token", "token": {"secretRef": {"name": "vault-token"}}}
        base.update(spec)
        return _manifest("VaultAuth", base, name="auth")

    return make


@pytest.fixture
def connection() -> Callable[..., Obj]:
    """A VaultConnection; keyword arguments replace top-level spec fields."""

    def make(**spec: Any) -> Obj:
        base: Obj = {"address": "https://vault.vault.svc:8200"}
        base.update(spec)
        return _manifest("VaultConnection", base, name="default")

    return make
