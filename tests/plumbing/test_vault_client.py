"""The hvac client reads the environment once, when it is made, not on every request."""

from __future__ import annotations

import pytest

from plumbing.vault import make_client


def test_proxy_and_ca_bundle_come_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "vault.local")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/company.pem")
    proxied = make_client(address="https://vault.example:8200")
    assert proxied.session.trust_env is False  # nothing read per request
    assert proxied.session.proxies.get("https") == "http://proxy.internal:3128"
    assert proxied.session.verify == "/etc/ssl/company.pem"
    assert proxied.adapter._kwargs["verify"] == "/etc/ssl/company.pem"  # what hvac sends
    direct = make_client(address="https://vault.local:8200", verify="/ca.pem")
    assert direct.session.proxies == {}
    assert direct.session.verify == "/ca.pem"  # an explicit CA wins over the variable
    insecure = make_client(address="https://vault.local:8200", verify=False)
    assert insecure.session.verify is False
