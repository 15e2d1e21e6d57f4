"""plumbing.vault.make_client verifies Vault with the CA it is given, not the system's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import requests

from plumbing.vault import make_client
from testbed.vault import running_vault


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_a_custom_ca_is_used_and_skip_verify_skips(tmp_path: Path) -> None:
    # hvac lets a given session's verify (True: the system CAs) win over its own argument.
    async with running_vault(tls=True, tls_dir=tmp_path) as vault:
        assert vault.ca_file is not None
        with_ca = make_client(address=vault.address, verify=str(vault.ca_file))
        response = await asyncio.to_thread(with_ca.sys.read_seal_status)
        assert response.status_code == 200
        unverified = make_client(address=vault.address, verify=False)
        assert (await asyncio.to_thread(unverified.sys.read_seal_status)).status_code == 200
        system = make_client(address=vault.address)
        with pytest.raises(requests.exceptions.SSLError):
            await asyncio.to_thread(system.sys.read_seal_status)


def test_proxy_and_ca_bundle_come_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What requests would read from the environment on every request is read once."""
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
