"""Emulation of the Vault HTTP API, served over real HTTP on loopback.

Tests, the demo and the benchmarks run against this instead of a Vault server (none can be
installed where the project is built). Its value is fidelity to what clients see: status codes,
``{"errors": [...]}`` bodies, field names, sealed-state behaviour and Shamir shares
byte-compatible with Vault's. See testbed/README.md for the API and the known differences.

Entry points: :func:`running_vault` (async context manager, in-process), ``testbed.vault.up``
(``python -m testbed up``) and ``python -m testbed.vault`` (this emulation alone).
"""

from testbed.vault.admin import VaultAdmin
from testbed.vault.clock import Clock
from testbed.vault.cluster import RunningVault, running_vault
from testbed.vault.core import InitResult

__all__ = ["Clock", "InitResult", "RunningVault", "VaultAdmin", "running_vault"]
