"""plumbing.vault.VaultHTTP, the aiohttp path of syncd's KV reads, keeps the hvac client's
properties: one origin, no redirect followed, no cookie carried between requests (tenants share
a session), the token and namespace as headers, the CA it is given, the proxy read once, and
failures named by kind with nothing of the request (the token) in them."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

import plumbing.vault
from plumbing.vault import VaultHTTP, VaultTransportError
from testbed.vault import running_vault

TOKEN = "hvs.test-token-never-shown"


@contextlib.asynccontextmanager
async def _server(
    handle: Callable[[web.Request], web.StreamResponse | Awaitable[web.StreamResponse]],
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        response = handle(request)
        return await response if inspect.isawaitable(response) else response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_headers_go_with_the_request_and_a_redirect_is_an_answer() -> None:
    async with _server(lambda r: web.json_response({})) as (elsewhere, other_seen):
        def redirect(request: web.Request) -> web.StreamResponse:
            if request.path.endswith("/first"):
                response = web.json_response({"data": {}})
                response.set_cookie("session", "tenant-a")
                return response
            raise web.HTTPTemporaryRedirect(elsewhere + request.path_qs)

        async with _server(redirect) as (address, seen):
            http = VaultHTTP(address=address, timeout=2)
            try:
                first = await http.request("GET", "v1/secret/data/first", token=TOKEN,
                                           namespace="team-a", headers={"X-Extra": "1"})
                answer = await http.request("GET", "v1/secret/data/x", query={"version": "3"})
            finally:
                await http.close()
    assert first.status == 200
    assert (seen[0].headers["X-Vault-Token"], seen[0].headers["X-Vault-Namespace"],
            seen[0].headers["X-Extra"], seen[0].headers["X-Vault-Request"]) == (
                TOKEN, "team-a", "1", "true")
    assert answer.status == 307  # not followed
    assert other_seen == []
    assert seen[1].path_qs == "/v1/secret/data/x?version=3"
    # Neither the cookie of the first answer nor the first request's token is carried over.
    assert "Cookie" not in seen[1].headers and "X-Vault-Token" not in seen[1].headers


async def test_nothing_is_sent_outside_the_origin() -> None:
    async with _server(lambda r: web.json_response({})) as (address, seen):
        http = VaultHTTP(address=address, allows=lambda url: False)
        try:
            with pytest.raises(VaultTransportError, match="ForeignAddress"):
                await http.request("GET", "v1/secret/data/x", token=TOKEN)
        finally:
            await http.close()
    assert seen == []


async def test_failures_are_named_by_kind_and_carry_nothing_of_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        import asyncio
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    failures: list[VaultTransportError] = []
    try:
        for address, kind in [(f"http://127.0.0.1:{port}", "ReadTimeout"),
                              ("http://127.0.0.1:1", "ConnectionError")]:
            http = VaultHTTP(address=address, timeout=0.3)
            try:
                with pytest.raises(VaultTransportError) as info:
                    await http.request("GET", "v1/secret/data/x", token=TOKEN)
            finally:
                await http.close()
            assert str(info.value) == kind
            failures.append(info.value)
    finally:
        await runner.cleanup()
    async with _server(lambda r: web.Response(body=b"x" * 200)) as (address, _):
        monkeypatch.setattr(plumbing.vault, "MAX_ANSWER_BYTES", 100)
        http = VaultHTTP(address=address)
        try:
            with pytest.raises(VaultTransportError, match="ResponseTooLarge"):
                await http.request("GET", "v1/secret/data/x", token=TOKEN)
        finally:
            await http.close()
    for failure in failures:
        assert failure.__cause__ is None and failure.__suppress_context__
        assert TOKEN not in repr(failure.args)


async def test_an_answer_without_a_length_is_counted_as_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chunked answer (no Content-Length: Go's net/http streams a large one so) is read
    whole when under the limit and refused once it passes it; one with a length is read at
    once (the parser stops at the length)."""
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"a" * 60, b"b" * 60, b"c" * 60):
            await response.write(part)
        await response.write_eof()
        return response

    async with _server(chunked) as (address, _):
        http = VaultHTTP(address=address)
        try:
            answer = await http.request("GET", "v1/secret/data/x", token=TOKEN)
            assert answer.body == b"a" * 60 + b"b" * 60 + b"c" * 60
            monkeypatch.setattr(plumbing.vault, "MAX_ANSWER_BYTES", 100)
            with pytest.raises(VaultTransportError, match="ResponseTooLarge"):
                await http.request("GET", "v1/secret/data/x", token=TOKEN)
        finally:
            await http.close()
    async with _server(lambda r: web.Response(body=b"x" * 100)) as (address, _):
        http = VaultHTTP(address=address)
        try:
            answer = await http.request("GET", "v1/secret/data/x", token=TOKEN)
            assert (answer.status, answer.body) == (200, b"x" * 100)  # at the limit: read
        finally:
            await http.close()


async def test_the_ca_given_is_the_trust_anchor(tmp_path: Path) -> None:
    async with running_vault(tls=True, tls_dir=tmp_path) as vault:
        assert vault.ca_file is not None
        for verify, expected in [(str(vault.ca_file), 200), (False, 200), (True, "SSLError")]:
            http = VaultHTTP(address=vault.address, verify=verify)
            try:
                answer = await http.request("GET", "v1/sys/seal-status")
                assert answer.status == expected
            except VaultTransportError as exc:
                assert str(exc) == expected
            finally:
                await http.close()


def test_the_proxy_is_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "vault.local")
    proxied = VaultHTTP(address="https://vault.example:8200")
    direct = VaultHTTP(address="https://vault.local:8200")
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.internal:3128")
    assert proxied._proxy == "http://proxy.internal:3128"
    assert direct._proxy is None
