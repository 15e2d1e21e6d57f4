"""``VaultConnection.caCertPath`` (VSO's): a PEM file in syncd's container as the trust anchor.

Against a TLS Vault whose certificate only the testbed's CA signs: a VaultConnection naming
that CA's file syncs; one naming a file that holds no certificate, or none at all, is a
condition naming ``spec.caCertPath`` (and never quotes the file); no CA fails the TLS check.
"""

from __future__ import annotations

from pathlib import Path

import hvac

from testbed.vault import running_vault
from tests.syncd.e2e.test_vault_access_boundaries import (
    _allow,
    _connection,
    _token_auth,
    _token_secret,
    _vss,
)
from tests.syncd.e2e.world import World


async def test_ca_cert_path_is_the_trust_anchor(world: World, tmp_path: Path) -> None:
    async with running_vault(tls=True, tls_dir=tmp_path / "tls") as tls_vault:
        root = tls_vault.admin.bootstrap(shares=1, threshold=1, kv_v2_path="secret").root_token
        world.secret_values.add(root)
        value = world.value("ca-path")
        client = hvac.Client(url=tls_vault.address, token=root, verify=tls_vault.verify)
        await world.vault_call(client.secrets.kv.v2.create_or_update_secret,
                               path="kv-secret/info", secret={"password": value})
        assert isinstance(tls_vault.verify, str)
        not_pem = tmp_path / "not-a-certificate"
        not_pem.write_text("private: do-not-quote-me\n")
        _allow(world, tls_vault.address)
        world.apply({"apiVersion": "v1", **_token_secret("tls-token", root)})
        cases = {"trusted": {"caCertPath": tls_vault.verify},
                 "not-pem": {"caCertPath": str(not_pem)},
                 "missing": {"caCertPath": str(tmp_path / "absent.pem")},
                 "no-ca": {}}
        for name, spec in cases.items():
            for obj in (_connection(name, tls_vault.address, **spec),
                        _token_auth(name, secret="tls-token", connection=name),
                        _vss(name, auth=name)):
                world.apply({"apiVersion": "secrets.vault-syncd.dev/v1beta1", **obj})
        world.start_syncd()

        assert (await world.synced("trusted"))["password"] == value
        for name, reason, part in [("not-pem", "VaultAuthInvalid", "holds no PEM certificate"),
                                   ("missing", "VaultAuthFailed", "cannot be read"),
                                   ("no-ca", "VaultUnavailable", "SSLError")]:
            condition = await world.wait_condition(name, "Synced", status="False",
                                                   reason=reason)
            assert part in condition["message"], condition
            if name != "no-ca":
                assert f"VaultConnection app/{name}: spec.caCertPath" in condition["message"]
            assert world.secret(name) is None
        await world.stop_syncd()
        assert "do-not-quote-me" not in world.captured()
