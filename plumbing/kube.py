"""Kubernetes API access as plain JSON, through kubernetes-asyncio's configured client.

kubernetes-asyncio knows how to load a kubeconfig or the in-cluster service account (tokens,
CA, proxies, token refresh), so we use it for that. Its typed models we do not use: they cost
CPU per object on a Raspberry Pi, and the controllers work on dicts anyway (merge patches,
status conditions, custom resources). :class:`Kube` sends requests through the configured
``ApiClient`` with ``_preload_content=False`` and decodes the JSON itself; errors become
:class:`KubeError` carrying the Status ``reason`` and ``code`` a controller branches on.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A request the API server refused, with the Status it answered."""

    def __init__(self, *, status: int, reason: str, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class Resource:
    """A kind's REST location: ``group`` is "" for the core API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


SECRETS = Resource("", "v1", "secrets")
PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
DAEMONSETS = Resource("apps", "v1", "daemonsets")
ARGO_ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts")


class Kube:
    """JSON requests and watch streams over one configured ``ApiClient``."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    async def close(self) -> None:
        await self._api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
        request_timeout: float | None = 30.0,
    ) -> JSON:
        response = await self._send(
            method, path, query=query, body=body, content_type=content_type,
            request_timeout=request_timeout,
        )
        try:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise _error(method, path, response.status, payload)
            return json.loads(payload) if payload else {}
        finally:
            response.release()

    async def stream(
        self, path: str, *, query: Sequence[tuple[str, str]], request_timeout: float
    ) -> AsyncIterator[JSON]:
        """Yield the events of a watch, one JSON object per line, until the server ends it."""
        response = await self._send(
            "GET", path, query=query, body=None, content_type="application/json",
            request_timeout=request_timeout,
        )
        try:
            if response.status != 200:
                raise _error("GET", path, response.status, await response.read())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]],
        body: object,
        content_type: str,
        request_timeout: float | None,
    ) -> aiohttp.ClientResponse:
        return await self._api.call_api(  # type: ignore[no-any-return]
            path,
            method,
            query_params=list(query),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=request_timeout, sock_connect=10),
        )


def _error(method: str, path: str, status: int, payload: bytes) -> KubeError:
    try:
        document = json.loads(payload)
    except ValueError:
        document = {}
    if not isinstance(document, Mapping):
        document = {}
    return KubeError(
        status=status,
        reason=str(document.get("reason") or "Unknown"),
        message=str(document.get("message") or payload[:200].decode(errors="replace")),
        method=method,
        path=path,
    )


async def connect(*, kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """A client from ``kubeconfig``, else in-cluster credentials, else ``~/.kube/config``."""
    if kubeconfig:
        api = await config.new_client_from_config(config_file=kubeconfig, context=context)
        return Kube(api)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return Kube(client.ApiClient(configuration=configuration))
    return Kube(await config.new_client_from_config(context=context))
