"""The HTTP front of one node: Vault's request pipeline over aiohttp.

Order matters and follows Vault (reference §1.1): request accounting and injected faults first
(they model the network and the node, not Vault's logic); then the status endpoints that work
while sealed; then ``503 Vault is sealed`` for everything else; then the token and the ACL check,
*before* routing, so a non-root token gets 403 even on a path nothing serves while a root token
gets 404 "no handler"; then the engine; then the response envelope. One catch-all route keeps
the hot path (a KV read) short.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from testbed.vault import admin, audit, events, sys_status
from testbed.vault.errors import (
    VaultError,
    invalid_token,
    no_handler,
    permission_denied,
    sealed,
)
from testbed.vault.logical import Operation, Request, Response
from testbed.vault.system_backend import needs_sudo

if TYPE_CHECKING:
    from testbed.vault.core import Core
    from testbed.vault.mounts import Mount
    from testbed.vault.node import Node
    from testbed.vault.tokens import TokenEntry

_METHOD_OPERATIONS: dict[str, Operation] = {
    "GET": "read",
    "LIST": "list",
    "POST": "update",
    "PUT": "update",
    "DELETE": "delete",
    "PATCH": "patch",
}
_BODY_METHODS = ("POST", "PUT", "PATCH")
MAX_REQUEST = 32 * 1024 * 1024
# Any valid token may ask which engine serves a path (the Vault CLI does before every kv call).
_ACL_EXEMPT = "sys/internal/ui/mounts/"


def _json(body: Any, status: int) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
    )


def _error(error: VaultError) -> web.Response:
    return _json(error.to_body(), error.status)


def _reset_connection(request: web.BaseRequest) -> web.Response:
    """Abort the TCP connection with RST, as a crashed or restarting pod would."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)  # never reaches the client


def _envelope(response: Response, mount: Mount) -> web.Response:
    body: dict[str, Any] = dict(response.top_level)
    body.update(
        request_id=str(uuid.uuid4()),
        lease_id=response.lease_id,
        renewable=response.renewable,
        lease_duration=response.lease_duration,
        data=response.data,
        wrap_info=None,
        warnings=response.warnings,
        auth=response.auth,
        mount_type=mount.backend.mount_type,
    )
    return _json(body, response.status)


#: aiohttp's C parser (llhttp) rejects methods it does not know, and Vault clients send LIST.
#: The connection handler below rewrites ``LIST`` to ``GET`` and flags it with this header.
ORIGINAL_METHOD_HEADER = "X-Testbed-Original-Method"


class _ListMethodHandler(RequestHandler):
    def data_received(self, data: bytes) -> None:
        # Clients send each request's head in one write, so a LIST request line starts a chunk.
        if data.startswith(b"LIST "):
            line_end = data.find(b"\r\n")
            if line_end > 0:
                data = (
                    b"GET "
                    + data[5:line_end]
                    + b"\r\n"
                    + ORIGINAL_METHOD_HEADER.encode()
                    + b": LIST"
                    + data[line_end:]
                )
        super().data_received(data)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _ListMethodHandler(self, loop=self._loop, **self._kwargs)

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # Vault's default max_request_size is 32 MiB; aiohttp's default is 1 MiB.
        return web.BaseRequest(
            message, payload, protocol, writer, task, self._loop, client_max_size=MAX_REQUEST
        )


def build_server(node: Node) -> web.Server:
    """The low-level aiohttp server for ``node``: one handler for every method and path."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        if method == "GET" and ORIGINAL_METHOD_HEADER in request.headers:
            method = request.headers[ORIGINAL_METHOD_HEADER]
        path = request.path
        if path.startswith(admin.PREFIX):
            return await admin.handle(node, request)
        node.counter.record(method, path, request.headers.get("X-Vault-Namespace", ""))
        fault = node.faults.pick(method, path)
        if fault is not None:
            if fault.latency > 0:
                await asyncio.sleep(fault.latency)
            if fault.reset:
                return _reset_connection(request)
            if fault.body is not None:
                return web.Response(body=fault.body, status=fault.status or 200,
                                    content_type="application/json")
            if fault.status is not None:
                return _json({"errors": fault.errors}, fault.status)
        try:
            if path.startswith(events.PREFIX) and method == "GET":
                return await node.core.events.subscribe(node, request)
            return await _serve(node, request, method, path)
        except VaultError as error:
            return _error(error)
        finally:
            node.core.storage.flush()

    return _Server(handle, access_log=None)


async def _serve(node: Node, request: web.BaseRequest, method: str, path: str) -> web.Response:
    if not path.startswith("/v1/"):
        raise VaultError(404)
    relative = path[4:]
    status_handler = sys_status.HANDLERS.get(relative)
    if status_handler is not None:
        return await status_handler(node, request)
    core = node.core
    if node.sealed or not core.initialized:
        raise sealed()
    core.leases.sweep()  # expiry is lazy: due leases go before anyone can use them

    operation = _METHOD_OPERATIONS.get(method)
    if operation is None:
        raise VaultError(405)
    query = request.query
    if operation == "read" and query.get("list", "").lower() in ("true", "1"):
        operation = "list"
    if method in _BODY_METHODS:
        data = await sys_status.json_body(request)
    else:
        data = {k: v for k, v in query.items() if k != "list"} if query else {}

    routed = core.mounts.route(relative)
    token = None
    if routed is None or routed[1] not in routed[0].backend.unauthenticated:
        token_id = request.headers.get("X-Vault-Token", "")
        if not token_id:
            bearer = request.headers.get("Authorization", "")
            token_id = bearer[7:] if bearer.startswith("Bearer ") else ""
        if not token_id:
            raise permission_denied()
        token = core.tokens.lookup(token_id)
        if token is None:
            raise invalid_token()
        # Vault's existence check turns a write into "create" or "update" for the ACL.
        if operation == "update" and routed and routed[0].backend.exists(routed[1]) is False:
            operation = "create"
        denied = False
        if not token.is_root and not relative.startswith(_ACL_EXEMPT):
            acl_path = relative
            if operation == "list" and not acl_path.endswith("/"):
                acl_path += "/"
            acl = core.policies.acl(token.policies)
            denied = not acl.allows(acl_path, operation) or (
                needs_sudo(acl_path) and not acl.allows(acl_path, "sudo")
            )
        if denied:
            await _audited_failure(core, routed=routed, operation=operation, path=relative,
                                   data=data, request=request, token=token,
                                   error=permission_denied())
        core.tokens.use(token)
    if routed is None:
        raise no_handler(relative)
    mount, inner = routed
    entry = audit.request_entry(
        request_id=str(uuid.uuid4()), operation=operation, path=relative,
        mount_point=mount.path, mount_type=mount.backend.mount_type,
        mount_accessor=mount.accessor, remote_address=request.remote or "", data=data,
    )
    await core.audit.log(entry, token=token)
    try:
        response = await mount.backend.handle(
            Request(
                operation=operation,
                path=inner,
                mount_path=mount.path,
                data=data,
                token=token,
                node=node,
                content_type=request.headers.get("Content-Type", ""),
                remote_addr=request.remote or "",
            )
        )
    except VaultError as error:
        await core.audit.log(audit.response_entry(entry, data=None, error="; ".join(
            error.errors) or str(error.status)), token=token)
        raise
    await core.audit.log(audit.response_entry(
        entry, data=response.data if response is not None else None, error=None), token=token)
    if response is None or response.status < 400:
        core.events.after_request(mount=mount, operation=operation, path=inner,
                                  data=data)
    if response is None:
        return web.Response(status=204)
    if response.raw is not None:
        return web.Response(body=response.raw, content_type=response.content_type)
    return _envelope(response, mount)


async def _audited_failure(
    core: Core, *, routed: tuple[Mount, str] | None, operation: str, path: str,
    data: dict[str, Any], request: web.BaseRequest, token: TokenEntry | None,
    error: VaultError,
) -> NoReturn:
    """Audit a request refused before its handler (permission denied), then raise ``error``."""
    mount = routed[0] if routed else None
    entry = audit.request_entry(
        request_id=str(uuid.uuid4()), operation=operation, path=path,
        mount_point=mount.path if mount else "", mount_type=mount.backend.mount_type
        if mount else "", mount_accessor=mount.accessor if mount else "",
        remote_address=request.remote or "", data=data,
    )
    entry["error"] = "; ".join(error.errors)
    await core.audit.log(entry, token=token)
    await core.audit.log(audit.response_entry(entry, data=None, error=entry["error"]),
                         token=token)
    raise error
