"""Fixtures for the Vault emulation's own tests (implementations in testbed.vault.fixtures)."""

from __future__ import annotations

import hvac
import pytest

from testbed.vault.cluster import RunningVault
from testbed.vault.fixtures import ReadyVault, in_thread, vault, vault_ready

__all__ = ["ReadyVault", "in_thread", "vault", "vault_ready"]


@pytest.fixture
def client(vault: RunningVault) -> hvac.Client:
    """An unauthenticated hvac client for the fresh ``vault``."""
    return hvac.Client(url=vault.address, verify=vault.verify)


@pytest.fixture
def root(vault_ready: ReadyVault) -> hvac.Client:
    """A root-token hvac client for ``vault_ready``."""
    return vault_ready.client()


#: The dynamic role ``database`` sets up: 60 s leases, renewable up to 300 s.
DB_DEFAULT_TTL = 60
DB_MAX_TTL = 300


@pytest.fixture
async def database(vault_ready: ReadyVault, root: hvac.Client) -> hvac.Client:
    """``root`` with a database engine at ``database/``: connection ``pg``, dynamic role ``app``."""
    await in_thread(root.sys.enable_secrets_engine, "database")
    await in_thread(
        root.secrets.database.configure,
        "pg",
        "postgresql-database-plugin",
        allowed_roles=["app", "static-app"],
        verify_connection=False,
        connection_url="postgresql://{{username}}:{{password}}@db:5432/app",
        username="vault",
        password="db-root-password",
    )
    await in_thread(
        root.secrets.database.create_role,
        "app",
        "pg",
        ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"],
        default_ttl=DB_DEFAULT_TTL,
        max_ttl=DB_MAX_TTL,
    )
    return root
