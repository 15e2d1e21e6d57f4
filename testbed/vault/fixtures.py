"""pytest fixtures for tests that need a Vault, importable from any conftest.

    from testbed.vault.fixtures import vault, vault_ready  # noqa: F401

``vault`` is a fresh, uninitialised, sealed single node; ``vault_ready`` is initialised (5 shares,
threshold 3), unsealed, with kv-v2 at ``secret/``, and knows its keys and root token. Both run
in the test's event loop, so hvac (synchronous) must be called off the loop: :func:`in_thread`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac
import pytest

from testbed.vault.cluster import RunningVault, running_vault
from testbed.vault.core import InitResult

T = TypeVar("T")


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call (hvac, requests) without blocking the emulation's loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


@dataclass
class ReadyVault:
    vault: RunningVault
    init: InitResult

    @property
    def root_token(self) -> str:
        return self.init.root_token

    @property
    def address(self) -> str:
        return self.vault.address

    def client(self, token: str | None = None, *, node: int = 0) -> hvac.Client:
        """An hvac client for ``node``, authenticated with ``token`` (default: root)."""
        return hvac.Client(
            url=self.vault.addresses[node],
            token=self.root_token if token is None else token,
            verify=self.vault.verify,
        )


@pytest.fixture
async def vault() -> AsyncIterator[RunningVault]:
    async with running_vault() as running:
        yield running


@pytest.fixture
async def vault_ready(vault: RunningVault) -> ReadyVault:
    init = vault.admin.bootstrap(shares=5, threshold=3)
    return ReadyVault(vault=vault, init=init)
