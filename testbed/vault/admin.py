"""The testbed's control surface: restart or seal nodes, inject faults, count requests, move time.

Two forms of the same operations: :class:`VaultAdmin`, the Python handle tests and benchmarks in
the same process use, and HTTP endpoints under ``/_testbed/`` (a prefix real Vault never serves)
for code in another process, such as the demo or a benchmark driver. The HTTP form acts on the
node that receives the request; time is shared by the whole cluster.

HTTP endpoints (JSON bodies):

- ``GET /_testbed/info``: node name, address, seal state, wrong-key status, restarts.
- ``GET /_testbed/requests`` / ``DELETE``: request counts of this node / reset them.
- ``GET|POST|DELETE /_testbed/faults``, ``DELETE /_testbed/faults/<id>``: list, add
  (fields of :meth:`FaultInjector.add`), clear, remove.
- ``POST /_testbed/restart``: a pod restart (sealed again, connections dropped).
- ``POST /_testbed/seal``: seal without a restart (Vault sealing itself).
- ``PUT /_testbed/wrong-key-status`` ``{"status": 400|500}``.
- ``POST /_testbed/clock`` ``{"advance": seconds}``.
- ``GET /_testbed/leases``: live leases (as ``sys/leases/lookup`` shows them).
- ``PUT /_testbed/database/refuse-renewals`` ``{"role": "app", "refused": true, "mount":
  "database"}``: renewals of that role's leases fail (400), as when the database refuses.
- ``POST /_testbed/database/valid`` ``{"username": …, "password": …, "mount": "database"}`` →
  ``{"valid": bool}``: would these credentials log in now.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from testbed.vault.core import Core, InitResult
from testbed.vault.database import DatabaseBackend
from testbed.vault.faults import Fault

if TYPE_CHECKING:
    from testbed.vault.leases import Lease
    from testbed.vault.node import Node

PREFIX = "/_testbed/"
WRONG_KEY_STATUSES = (400, 500)


def _check_wrong_key_status(status: int) -> None:
    if status not in WRONG_KEY_STATUSES:
        raise ValueError("wrong-key status must be 400 (Vault >= 1.13) or 500 (Vault 1.3-1.12)")


class VaultAdmin:
    """In-process control of one emulated cluster. Node arguments are indexes (0 = vault-0)."""

    def __init__(self, *, core: Core) -> None:
        self.core = core

    @property
    def nodes(self) -> list[Node]:
        return list(self.core.nodes)

    def node(self, index: int = 0) -> Node:
        return self.core.nodes[index]

    def _targets(self, node: int | None) -> list[Node]:
        return self.nodes if node is None else [self.node(node)]

    # -- life cycle ------------------------------------------------------------------------

    async def restart(self, node: int = 0) -> None:
        """Restart one node: sealed again with its unseal pool cleared, data intact."""
        await self.node(node).restart()

    def seal(self, node: int = 0) -> None:
        """Seal one node in place, as Vault does by itself after some storage errors."""
        self.node(node).seal()

    def set_wrong_key_status(self, status: int, *, node: int | None = None) -> None:
        """400 (current Vault) or 500 (Vault 1.3-1.12) for a share set that fails to decrypt."""
        _check_wrong_key_status(status)
        for target in self._targets(node):
            target.wrong_key_status = status

    def advance_clock(self, seconds: float) -> None:
        self.core.clock.advance(seconds)

    # -- dynamic secrets -------------------------------------------------------------------

    def database(self, mount: str = "database") -> DatabaseBackend:
        """The ``database`` engine mounted at ``mount``."""
        found = self.core.mounts.find(mount.strip("/") + "/")
        if found is None or not isinstance(found.backend, DatabaseBackend):
            raise ValueError(f"no database engine mounted at {mount!r}")
        return found.backend

    def refuse_renewals(self, role: str, *, mount: str = "database", refused: bool = True) -> None:
        """Make ``sys/leases/renew`` fail for ``role``'s credentials (the database refuses)."""
        self.database(mount).refuse_renewals(role, refused=refused)

    def credentials_valid(self, username: str, password: str, *, mount: str = "database") -> bool:
        """Would these credentials log in to the (absent) database now?"""
        return self.database(mount).credentials_valid(username, password)

    def leases(self, prefix: str = "") -> list[Lease]:
        """Live leases whose ID starts with ``prefix`` (expired ones are revoked first)."""
        return [lease for lease in self.core.leases.leases() if lease.id.startswith(prefix)]

    # -- shortcuts for tests of other parts (the unseal protocol itself goes over HTTP) ------

    def initialize(self, *, shares: int = 5, threshold: int = 3) -> InitResult:
        return self.core.initialize(shares=shares, threshold=threshold)

    def unseal(self, keys: list[bytes], *, node: int | None = None) -> None:
        for target in self._targets(node):
            for key in keys:
                if not target.sealed:
                    break
                target.unseal(key=key.hex())

    def bootstrap(
        self, *, shares: int = 1, threshold: int = 1, kv_v2_path: str | None = "secret"
    ) -> InitResult:
        """Initialise, unseal every node and mount kv-v2 at ``kv_v2_path``: a ready Vault."""
        result = self.initialize(shares=shares, threshold=threshold)
        self.unseal(result.keys[:threshold])
        if kv_v2_path:
            self.core.mounts.enable_secrets(
                path=kv_v2_path, engine_type="kv-v2", options=None, description=""
            )
        self.core.storage.flush()
        return result

    # -- faults and accounting -------------------------------------------------------------

    def add_fault(
        self,
        *,
        method: str = "*",
        path: str = "*",
        latency: float = 0.0,
        status: int | None = None,
        errors: list[str] | None = None,
        reset: bool = False,
        times: int | None = None,
        probability: float = 1.0,
        node: int | None = None,
        body: bytes | None = None,
    ) -> list[Fault]:
        """Inject a fault on matching requests (``path`` is an fnmatch glob on the URL path).

        ``body``: answer with these raw bytes (with ``status``, default 200) instead of serving.
        """
        return [
            target.faults.add(
                method=method,
                path=path,
                latency=latency,
                status=status,
                errors=errors,
                reset=reset,
                times=times,
                probability=probability,
                body=body,
            )
            for target in self._targets(node)
        ]

    def clear_faults(self, *, node: int | None = None) -> None:
        for target in self._targets(node):
            target.faults.clear()

    def request_count(
        self, *, method: str | None = None, path: str | None = None, node: int | None = None,
        namespace: str | None = None,
    ) -> int:
        """Requests counted; ``namespace``: only those with that X-Vault-Namespace header."""
        return sum(t.counter.count(method=method, path=path, namespace=namespace)
                   for t in self._targets(node))

    def request_counts(self, *, node: int | None = None) -> dict[str, int]:
        totals: dict[str, int] = {}
        for target in self._targets(node):
            for key, count in target.counter.snapshot().items():
                totals[key] = totals.get(key, 0) + count
        return totals

    def reset_counters(self, *, node: int | None = None) -> None:
        for target in self._targets(node):
            target.counter.reset()


# -- HTTP form -----------------------------------------------------------------------------


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


async def _body(request: web.BaseRequest) -> dict[str, Any]:
    raw = await request.read()
    body = json.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _info(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "address": node.address,
        "initialized": node.core.initialized,
        "sealed": node.sealed,
        "progress": node.progress,
        "wrong_key_status": node.wrong_key_status,
        "restarts": node.restarts,
    }


async def handle(node: Node, request: web.BaseRequest) -> web.Response:
    action = request.path[len(PREFIX) :].strip("/")
    method = request.method
    try:
        if action == "info" and method == "GET":
            return _reply(_info(node))
        if action == "requests":
            if method == "GET":
                return _reply({"total": node.counter.count(), "requests": node.counter.snapshot()})
            if method == "DELETE":
                node.counter.reset()
                return web.Response(status=204)
        if action == "faults":
            if method == "GET":
                return _reply({"faults": [f.describe() for f in node.faults.rules()]})
            if method == "POST":
                body = await _body(request)
                if "body_base64" in body:  # raw bytes over JSON
                    body["body"] = base64.b64decode(body.pop("body_base64"))
                elif isinstance(body.get("body"), str):
                    body["body"] = body["body"].encode()
                fault = node.faults.add(**body)
                return _reply(fault.describe())
            if method == "DELETE":
                node.faults.clear()
                return web.Response(status=204)
        if action.startswith("faults/") and method == "DELETE":
            node.faults.remove(int(action[len("faults/") :]))
            return web.Response(status=204)
        if action == "restart" and method == "POST":
            node.restart_soon()
            return _reply(_info(node))
        if action == "seal" and method == "POST":
            node.seal()
            return _reply(_info(node))
        if action == "wrong-key-status" and method in ("PUT", "POST"):
            status = int((await _body(request))["status"])
            _check_wrong_key_status(status)
            node.wrong_key_status = status
            return _reply(_info(node))
        if action == "leases" and method == "GET":
            now = node.core.clock.now()
            leases = node.core.leases.leases()
            return _reply({"leases": [lease.lookup_data(now) for lease in leases]})
        if action == "database/refuse-renewals" and method in ("PUT", "POST"):
            body = await _body(request)
            admin = VaultAdmin(core=node.core)
            admin.database(body.get("mount", "database")).refuse_renewals(
                str(body["role"]), refused=bool(body.get("refused", True))
            )
            node.core.storage.flush()
            return web.Response(status=204)
        if action == "database/valid" and method == "POST":
            body = await _body(request)
            backend = VaultAdmin(core=node.core).database(body.get("mount", "database"))
            valid = backend.credentials_valid(str(body["username"]), str(body["password"]))
            node.core.storage.flush()
            return _reply({"valid": valid})
        if action == "clock" and method == "POST":
            node.core.clock.advance(float((await _body(request)).get("advance", 0)))
            return _reply({"now": node.core.clock.now()})
    except (ValueError, TypeError, KeyError) as error:
        return _reply({"errors": [f"bad testbed request: {error}"]}, 400)
    return _reply({"errors": [f"no testbed endpoint {method} {request.path}"]}, 404)
