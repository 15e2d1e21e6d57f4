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
