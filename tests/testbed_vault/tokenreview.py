"""A fake Kubernetes TokenReview endpoint for the Kubernetes-auth tests.

It knows a set of valid JWTs and the service account each one belongs to, answers
``POST /apis/authentication.k8s.io/v1/tokenreviews`` like the API server (201, ``status``), and
records every review request so tests can check what Vault sent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from testbed.vault.tls import make_tls

PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass
class FakeTokenReview:
    url: str = ""
    ca_pem: str = ""
    valid: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # jwt -> ns, name, uid
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"authorization": request.headers.get("Authorization"), "body": body})
        token = body["spec"]["token"]
        account = self.valid.get(token)
        review: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": body["spec"],
        }
        if account is None:
            review["status"] = {"user": {}, "error": "[invalid bearer token]"}
        else:
            namespace, name, uid = account
            review["status"] = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{namespace}:{name}",
                    "uid": uid,
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                },
                "audiences": body["spec"].get("audiences") or [],
            }
        return web.Response(status=201, text=json.dumps(review), content_type="application/json")


@contextlib.asynccontextmanager
async def fake_tokenreview(*, tls_dir: Path | None = None) -> AsyncIterator[FakeTokenReview]:
    fake = FakeTokenReview()
    app = web.Application()
    app.router.add_post(PATH, fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ssl_context = None
    if tls_dir is not None:
        files = make_tls(directory=tls_dir, hosts=["127.0.0.1"])
        ssl_context = files.server_context()
        fake.ca_pem = files.ca.read_text()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
