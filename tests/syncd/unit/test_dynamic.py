"""VaultDynamicSecret: the spec, and the renewal plan computed from the status alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from syncd.dynamic import STATIC_GRACE_SECONDS, _static_metadata, plan
from syncd.dynamic_specs import SpecError, parse_vault_dynamic_secret

Obj = dict[str, Any]
NOW = 1_000_000.0


def vds(**spec: Any) -> Obj:
    base: Obj = {"mount": "database", "path": "creds/app", "destination": {"name": "db"}}
    base.update(spec)
    return {"apiVersion": "secrets.vault-syncd.dev/v1beta1", "kind": "VaultDynamicSecret",
            "metadata": {"name": "web", "namespace": "app", "generation": 1}, "spec": base}


def test_defaults_are_vsos(defaulted: Callable[[Obj], Obj]) -> None:
    spec = parse_vault_dynamic_secret(vds())
    assert (spec.method, spec.renewal_percent, spec.revoke, spec.allow_static_creds) == \
        ("GET", 67, False, False)
    assert spec.refresh_after_seconds is None
    assert parse_vault_dynamic_secret(defaulted(vds())) == spec


@pytest.mark.parametrize(("change", "field"), [
    ({"renewalPercent": 91}, "spec.renewalPercent"),
    ({"renewalPercent": -1}, "spec.renewalPercent"),
    ({"requestHTTPMethod": "DELETE"}, "spec.requestHTTPMethod"),
    ({"params": {"ttl": 3}}, "spec.params[ttl]"),
    ({"path": "../sys"}, "spec.path"),
    ({"destination": {}}, "spec.destination.name"),
    ({"refreshAfter": "soon"}, "spec.refreshAfter"),
])
def test_invalid_fields_are_named(change: Obj, field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_vault_dynamic_secret(vds(**change))
    assert field in str(error.value)
    assert "VaultDynamicSecret app/web" in str(error.value)


def lease_status(*, duration: int = 30, renewable: bool = True, at: float = NOW) -> Obj:
    return {"lastRenewalTime": int(at), "secretMAC": "m",
            "secretLease": {"id": "database/creds/app/x", "duration": duration,
                            "renewable": renewable, "requestID": "r"}}


def decide(status: Obj, *, now: float = NOW, new_spec: bool = False, ok: bool = True,
           percent: int = 67, refresh: float | None = None) -> Any:
    return plan(status=status, new_spec=new_spec, destination_ok=ok, now=now,
                renewal_percent=percent, refresh_after=refresh)


def test_nothing_before_the_renewal_percent_then_renew() -> None:
    status = lease_status(duration=30)
    waiting = decide(status, now=NOW + 5)
    assert waiting.action == "wait"
    assert waiting.after == pytest.approx(30 * 0.67 - 5)
    assert decide(status, now=NOW + 20.1).action == "renew"


def test_a_restart_mid_lease_keeps_the_lease() -> None:
    """Only the status counts: a fresh process with it waits, then renews the same lease."""
    status = lease_status(duration=600, at=NOW - 100)
    assert decide(status).action == "wait"
    assert decide(status, now=NOW + 303).action == "renew"


@pytest.mark.parametrize(("status", "now", "new_spec", "ok", "why"), [
    ({}, NOW, True, True, "first sync"),
    (lease_status(), NOW + 1, True, True, "new spec"),
    (lease_status(), NOW + 1, False, False, "the Secret was changed or deleted"),
    (lease_status(duration=30), NOW + 30, False, True, "the lease expired"),
    (lease_status(renewable=False), NOW + 21, False, True, "the lease is not renewable"),
])
def test_new_credentials_when(status: Obj, now: float, new_spec: bool, ok: bool,
                              why: str) -> None:
    todo = decide(status, now=now, new_spec=new_spec, ok=ok)
    assert (todo.action, todo.why) == ("issue", why)


def test_static_credentials_follow_the_ttl() -> None:
    status = {"lastRenewalTime": int(NOW), "staticCredsMetaData": {"ttl": 40}}
    assert decide(status, now=NOW + 10).after == pytest.approx(30 + STATIC_GRACE_SECONDS)
    assert decide(status, now=NOW + 41 + STATIC_GRACE_SECONDS).action == "issue"


def test_without_a_lease_refresh_after_or_never() -> None:
    status = {"lastRenewalTime": int(NOW)}
    assert decide(status, now=NOW + 10, refresh=60).after == pytest.approx(50)
    assert decide(status, now=NOW + 61, refresh=60).action == "issue"
    assert decide(status, now=NOW + 10 ** 6) == decide(status, now=NOW)
    assert decide(status).after is None


def test_static_metadata_in_vsos_names() -> None:
    data = {"username": "u", "password": "p", "last_vault_rotation":
            "2024-05-01T10:00:00.123456789Z", "rotation_period": 3600, "ttl": 120}
    assert _static_metadata(data) == {"lastVaultRotation": 1714557600, "rotationPeriod": 3600,
                                      "rotationSchedule": "", "ttl": 120}
