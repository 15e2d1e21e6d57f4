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
