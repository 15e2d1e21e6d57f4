"""How a scenario reaches the faults: one small interface, two ways to drive it.

``python -m bench faults`` runs both emulations in processes of their own and reaches their
fault injection over HTTP (Vault's ``/_testbed/`` prefix, the Kubernetes emulation's control
port, ``bench/kube_server.py``); the fast cases in ``tests/faults/`` run them in the test's
event loop and call the same faults in-process. The scenarios are written once, against
:class:`Control`, so both run the same injections.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from testbed.kube import Kube
from testbed.kube.faults import Held
from testbed.vault import RunningVault


class Control(Protocol):
    """The faults a scenario may inject into the two emulations."""

    async def vault_fault(self, **rule: Any) -> None:
        """A Vault fault rule (``testbed.vault.faults.FaultInjector.add``'s arguments)."""

    async def vault_clear(self) -> None: ...

    async def vault_seal(self) -> None: ...

    async def vault_unseal(self) -> None:
        """Unseal with the keys of the bootstrap (as an operator or the unsealer would)."""

    async def kube_fault(self, kind: str, **match: Any) -> None:
        """A Kubernetes fault (``testbed.kube.faults.Faults.add``'s arguments)."""

    async def kube_clear(self) -> None: ...

    async def kube_held(self) -> list[Held]:
        """The requests a Kubernetes latency fault holds now (``Faults.held``)."""

    async def kube_cut_watches(self) -> None: ...

    async def kube_expire_watches(self) -> None: ...

    async def kube_restart(self, *, down: float) -> None: ...


class HttpControl:
    """The emulations in their own processes (``bench.harness.running_bench``)."""

    def __init__(self, *, session: aiohttp.ClientSession, vault_address: str,
                 unseal_keys: list[str], kube_control: str) -> None:
        self._session = session
        self._vault = vault_address
        self._keys = unseal_keys
        self._kube = kube_control

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        async with self._session.request(method, url, json=body) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def vault_fault(self, **rule: Any) -> None:
        await self._call("POST", f"{self._vault}/_testbed/faults", rule)

    async def vault_clear(self) -> None:
        await self._call("DELETE", f"{self._vault}/_testbed/faults")

    async def vault_seal(self) -> None:
        await self._call("POST", f"{self._vault}/_testbed/seal")

    async def vault_unseal(self) -> None:
        for key in self._keys:
            answer = await self._call("PUT", f"{self._vault}/v1/sys/unseal", {"key": key})
            if not answer.get("sealed", True):
                return

    async def kube_fault(self, kind: str, **match: Any) -> None:
        await self._call("POST", f"{self._kube}/faults", {"kind": kind, **match})

    async def kube_clear(self) -> None:
        await self._call("DELETE", f"{self._kube}/faults")

    async def kube_held(self) -> list[Held]:
        return [Held(**held) for held in await self._call("GET", f"{self._kube}/faults/held")]

    async def kube_cut_watches(self) -> None:
        await self._call("POST", f"{self._kube}/watches/cut")

    async def kube_expire_watches(self) -> None:
        await self._call("POST", f"{self._kube}/watches/expire")

    async def kube_restart(self, *, down: float) -> None:
        await self._call("POST", f"{self._kube}/restart", {"down": down})


class InProcessControl:
    """The emulations in this event loop (``running_kube``, ``running_vault``)."""

    def __init__(self, *, kube: Kube, vault: RunningVault, unseal_keys: list[bytes]) -> None:
        self._kube = kube
        self._vault = vault
        self._keys = unseal_keys

    async def vault_fault(self, **rule: Any) -> None:
        self._vault.admin.add_fault(**rule)

    async def vault_clear(self) -> None:
        self._vault.admin.clear_faults()

    async def vault_seal(self) -> None:
        self._vault.admin.seal()

    async def vault_unseal(self) -> None:
        self._vault.admin.unseal(self._keys)

    async def kube_fault(self, kind: str, **match: Any) -> None:
        self._kube.faults.add(kind, **match)  # type: ignore[arg-type]

    async def kube_clear(self) -> None:
        self._kube.faults.clear()

    async def kube_held(self) -> list[Held]:
        return self._kube.faults.held()

    async def kube_cut_watches(self) -> None:
        self._kube.cut_watches()

    async def kube_expire_watches(self) -> None:
        self._kube.expire_watches()

    async def kube_restart(self, *, down: float) -> None:
        await self._kube.restart_server(down=down)
