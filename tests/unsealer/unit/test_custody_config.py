"""The custody config: errors that name the file, the custodian and the field; the namespace
rule; the environment custodian's warning."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage
import pytest

from unsealer.custody import CustodyConfigError, CustodyError, build_custodians, load_config
from unsealer.custody.config import EnvironmentConfig, KubeSecretConfig, parse_config
from unsealer.shares import Share

MakeShares = Callable[..., list[Share]]
RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())


def _parse(*custodians: dict[str, Any], **top: Any) -> Any:
    return parse_config(
        {"custodians": list(custodians), **top}, source="custody.yaml", vault_namespace="vault"
    )


def _kube(name: str = "kube-a", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "kind": "kubernetesSecret", "namespace": "vault-custody",
        "secretName": f"unseal-{name}", **extra,
    }


def test_secret_in_vaults_namespace_is_refused() -> None:
    with pytest.raises(CustodyConfigError) as caught:
        _parse(_kube(namespace="vault"))
    message = str(caught.value)
    assert "custody.yaml" in message and "custodian 'kube-a'" in message
    assert "'namespace'" in message and "Vault's namespace 'vault'" in message


def test_secret_elsewhere_is_accepted_with_defaults() -> None:
    config = _parse(_kube(shares=2, identityKey="age-identity"), threshold=3)
    [spec] = config.custodians
    assert isinstance(spec, KubeSecretConfig)
    assert (spec.namespace, spec.secret_name, spec.key_prefix) == (
        "vault-custody", "unseal-kube-a", "share-",
    )
    assert (spec.shares, spec.identity_key, config.threshold) == (2, "age-identity", 3)


@pytest.mark.parametrize(
    ("custodian", "top", "expected"),
    [
        (_kube(secretNmae="x"), {}, r"custodian 'kube-a': unknown field\(s\) secretNmae"),
        (_kube(kind="vaultKv"), {}, "custodian 'kube-a': field 'kind': unknown kind 'vaultKv'"),
        (_kube(name="Kube_A"), {}, "custodian #1: field 'name': 'Kube_A' is not a DNS label"),
        (_kube(shares="two"), {}, "custodian 'kube-a': field 'shares': must be a whole number"),
        (_kube(encryptedFor=RECIPIENT), {}, "encryptedFor and identityFrom go together"),
        (_kube(encryptedFor="age1nope", identityFrom="x"), {}, "'encryptedFor': not an age"),
        (_kube(encryptedFor=RECIPIENT, identityFrom="nobody"), {}, "no custodian is named"),
        (_kube(), {"threshold": 4, "shares": 3}, "threshold 4 is larger than shares 3"),
        (_kube(), {"treshold": 3}, r"unknown field\(s\) treshold"),
        ({"name": "p", "kind": "peer", "url": "http://x", "caFile": "/", "certFile": "/",
          "keyFile": "/"}, {}, "custodian 'p': field 'url': must be an https:// URL"),
        ({"name": "e", "kind": "env"}, {}, "custodian 'e': field 'variable': is required"),
    ],
)
def test_errors_name_the_custodian_and_field(
    custodian: dict[str, Any], top: dict[str, Any], expected: str
) -> None:
    with pytest.raises(CustodyConfigError, match=expected):
        _parse(custodian, **top)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(CustodyConfigError, match="'kube-a' is defined twice"):
        _parse(_kube(), _kube())


def test_identity_holder_needs_a_place_for_the_identity() -> None:
    encrypted = _kube("kube-a", encryptedFor=RECIPIENT, identityFrom="kube-b")
    with pytest.raises(CustodyConfigError, match="'kube-b' needs 'identityKey'"):
        _parse(encrypted, _kube("kube-b"))
    _parse(encrypted, _kube("kube-b", identityKey="age-identity"))


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "custody.yaml"
    bad.write_text("custodians: [\n")
    with pytest.raises(CustodyConfigError, match=f"{bad}: not valid YAML at line"):
        load_config(bad, vault_namespace="vault")
    with pytest.raises(CustodyConfigError, match="expected a mapping"):
        parse_config(["x"], source="c", vault_namespace="vault")
    with pytest.raises(CustodyConfigError, match=r"(?i)no such file"):
        load_config(tmp_path / "absent.yaml", vault_namespace="vault")


async def test_environment_custodian_warns_loudly_at_load(
    logs: io.StringIO,
    log_events: Callable[[io.StringIO], list[dict[str, Any]]],
    make_shares: MakeShares,
    assert_no_leak: Any,
) -> None:
    shares = make_shares(5, 3)[:2]
    config = _parse({"name": "dev", "kind": "env", "variable": "DEV_SHARES"})
    [warning] = [e for e in log_events(logs) if e["event"].endswith("development_only")]
    assert warning["level"] == "warning" and warning["custodian"] == "dev"
    assert isinstance(config.custodians[0], EnvironmentConfig)

    environ = {"DEV_SHARES": f"{shares[0].hex()}, {shares[1].base64()}"}
    dev = build_custodians(config, environ=environ)["dev"]
    fetched = await dev.fetch()
    assert fetched == shares
    assert [s.origin for s in fetched] == ["dev/DEV_SHARES[1]", "dev/DEV_SHARES[2]"]
    with pytest.raises(CustodyError, match="read-only"):
        await dev.store(shares)
    with pytest.raises(CustodyError, match=r"\$DEV_SHARES is not set"):
        await build_custodians(config, environ={})["dev"].fetch()
    assert "development only" in dev.describe()
    assert_no_leak(logs.getvalue(), shares)


def test_kube_custodian_needs_a_client() -> None:
    with pytest.raises(CustodyConfigError, match="needs a Kubernetes client"):
        build_custodians(_parse(_kube()))
