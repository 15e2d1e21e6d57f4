"""The unauthenticated ``sys/`` endpoints that work while sealed: init, seal-status, unseal, health.

They return bare JSON objects (no envelope), need no token, and each has its own method rules
and error wording (reference §1.2-1.6), so they are served here rather than as a logical engine.
``sys/leader`` is unauthenticated too but answers 503 while sealed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from testbed.vault.errors import VaultError, sealed
from testbed.vault.params import get_bool, get_int

if TYPE_CHECKING:
    from testbed.vault.node import Node

StatusHandler = Callable[["Node", web.BaseRequest], Awaitable[web.Response]]

_WRITE_METHODS = ("PUT", "POST")
# Query parameter → default status code, in the order the conditions are checked.
HEALTH_CODES = {
    "uninitcode": 501,
    "sealedcode": 503,
    "drsecondarycode": 472,
    "performancestandbycode": 473,
    "standbycode": 429,
    "activecode": 200,
    "removedcode": 530,
    "haunhealthycode": 474,
}


def bare(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def _method_not_allowed() -> VaultError:
    return VaultError(405)


async def json_body(request: web.BaseRequest) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise VaultError(400, f"failed to parse JSON input: {error}") from None
    if not isinstance(body, dict):
        raise VaultError(400, "failed to parse JSON input: body must be a JSON object")
    return body


async def init(node: Node, request: web.BaseRequest) -> web.Response:
    if request.method == "GET":
        return bare({"initialized": node.core.initialized})
    if request.method not in _WRITE_METHODS:
        raise _method_not_allowed()
    body = await json_body(request)
    if any(body.get(f) for f in ("recovery_shares", "recovery_threshold", "recovery_pgp_keys")):
        raise VaultError(400, "parameters specific to auto unseal seals present")
    pgp_keys = body.get("pgp_keys") or []
    shares = get_int(body, "secret_shares")
    if pgp_keys and len(pgp_keys) != shares:
        raise VaultError(
            400,
            "invalid seal configuration: count mismatch between number of provided PGP keys "
            "and number of shares",
        )
    if pgp_keys or body.get("root_token_pgp_key"):
        raise VaultError(400, "error decoding given PGP key: PGP is not supported by the testbed")
    result = node.core.initialize(shares=shares, threshold=get_int(body, "secret_threshold"))
    return bare(
        {
            "keys": result.keys_hex,
            "keys_base64": result.keys_base64,
            "root_token": result.root_token,
        }
    )


async def seal_status(node: Node, request: web.BaseRequest) -> web.Response:
    if request.method != "GET":
        raise _method_not_allowed()
    return bare(node.seal_status())


async def unseal(node: Node, request: web.BaseRequest) -> web.Response:
    if request.method not in _WRITE_METHODS:
        raise _method_not_allowed()
    # Vault decodes into an untagged Go struct: JSON keys match case-insensitively.
    body = {key.lower(): value for key, value in (await json_body(request)).items()}
    key = body.get("key") or ""
    if not isinstance(key, str):
        raise VaultError(400, "failed to parse JSON input: key must be a string")
    return bare(node.unseal(key=key, reset=get_bool(body, "reset")))


def _health_codes(query: Mapping[str, str]) -> tuple[dict[str, int], bool, bool]:
    codes = dict(HEALTH_CODES)
    for name in HEALTH_CODES:
        if name in query:
            try:
                codes[name] = int(query[name])
            except ValueError:
                raise VaultError(400) from None
    flags: dict[str, bool] = {}
    for name in ("standbyok", "perfstandbyok"):
        value = query.get(name, "")
        if value == "":
            flags[name] = name in query  # a bare ?standbyok means true
            continue
        try:
            flags[name] = get_bool({name: value}, name)
        except VaultError:
            raise VaultError(400, f"bad value for {name} parameter: {value!r}") from None
    return codes, flags["standbyok"], flags["perfstandbyok"]


async def health(node: Node, request: web.BaseRequest) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        raise _method_not_allowed()
    codes, standby_ok, _ = _health_codes(request.query)
    core = node.core
    active = core.active_node() is node
    standby = not active
    if not core.initialized:
        status = codes["uninitcode"]
    elif node.sealed:
        status = codes["sealedcode"]
    elif standby and not standby_ok:
        status = codes["standbycode"]
    else:
        status = codes["activecode"]
    if request.method == "HEAD":
        return web.Response(status=status)
    body: dict[str, Any] = {
        "initialized": core.initialized,
        "sealed": node.sealed,
        "standby": standby,
        "performance_standby": False,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": int(core.clock.now()),
        "version": core.version,
        "enterprise": False,
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
    }
    if core.initialized and not node.sealed:
        body["cluster_name"] = core.cluster.get("name", "")
        body["cluster_id"] = core.cluster.get("id", "")
    return bare(body, status)


async def leader(node: Node, request: web.BaseRequest) -> web.Response:
    if request.method != "GET":
        raise _method_not_allowed()
    if not node.core.initialized or node.sealed:
        raise sealed()
    active = node.core.active_node()
    leader_address = active.address if active is not None else ""
    return bare(
        {
            "ha_enabled": True,
            "is_self": active is node,
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": leader_address,
            "leader_cluster_address": leader_address.replace("8200", "8201"),
            "performance_standby": False,
            "performance_standby_last_remote_wal": 0,
            "raft_committed_index": 0,
            "raft_applied_index": 0,
        }
    )


HANDLERS: dict[str, StatusHandler] = {
    "sys/init": init,
    "sys/seal-status": seal_status,
    "sys/unseal": unseal,
    "sys/health": health,
    "sys/leader": leader,
}
