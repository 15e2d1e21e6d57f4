"""Kubernetes API access as plain JSON over one aiohttp session.

The controllers work on dicts (merge patches, status conditions, custom resources), so typed
models would only cost CPU per object on a Raspberry Pi, and importing kubernetes-asyncio's
client costs 34 MiB of resident memory for its ~700 generated classes. :class:`Kube` sends
requests with the credentials :mod:`plumbing.kubeconfig` found (kubeconfig or in-cluster) and
decodes the JSON itself; errors become :class:`KubeError` carrying the Status ``reason`` and
``code`` a controller branches on.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from plumbing.kubeconfig import Credentials, load
from plumbing.version import VERSION

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
#: Requests sent again after a Retry-After answer (client-go's default), and the longest wait.
MAX_RETRIES = 10
RETRY_AFTER_CAP = 30


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
    """JSON requests and watch streams to the API server ``credentials`` name."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        # HTTPS_PROXY and NO_PROXY, as kubectl honours them, read once: aiohttp's trust_env
        # reads the environment and ~/.netrc on every request (16 % of a cold sync's CPU).
        self._proxy = credentials.proxy or _environment_proxy(credentials.server)

    @property
    def server(self) -> str:
        return self._credentials.server

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created in the running loop, on first use
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, ssl=self._credentials.ssl or True),
                # A watch event carries a whole object; etcd allows 1.5 MiB.
                read_bufsize=2**21,
                headers={"User-Agent": f"vault-syncd/{VERSION}"},
            )
        return self._session

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
        for retry in range(MAX_RETRIES + 1):
            response = await self._send(
                method, path, query=query, body=body, content_type=content_type,
                request_timeout=request_timeout,
            )
            try:
                payload = await response.read()
                wait = _retry_after(response)
                if wait is not None and retry < MAX_RETRIES:
                    await asyncio.sleep(wait)
                    continue
                if not 200 <= response.status < 300:
                    raise _error(method, path, response.status, payload)
                return json.loads(payload) if payload else {}
            finally:
                response.release()
        raise AssertionError("unreachable: the last attempt returns or raises")

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
        headers = {"Accept": "application/json"}
        authorization = await self._credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        return await self._client().request(
            method, self._credentials.server + path, params=list(query), data=data,
            headers=headers, proxy=self._proxy,
            server_hostname=self._credentials.server_hostname,
            timeout=aiohttp.ClientTimeout(total=request_timeout, sock_connect=10),
        )


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds to wait before sending the request again, if the server asked for it.

    As client-go does: a 429 (API Priority and Fairness turning the request away before it ran)
    or a 5xx with ``Retry-After: <seconds>`` is tried again after that long, any verb, at most
    :data:`MAX_RETRIES` times. Retrying at once, or failing the reconcile into its own backoff,
    would either pile onto a server that said it is busy or wait far longer than it asked.
    """
    if response.status != 429 and response.status < 500:
        return None
    try:
        seconds = int(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(seconds, 0), RETRY_AFTER_CAP) if seconds >= 0 else None


def _environment_proxy(server: str) -> str | None:
    """The proxy the environment names for ``server`` (``*_PROXY``, ``NO_PROXY``), if any."""
    url = urllib.parse.urlsplit(server)
    if urllib.request.proxy_bypass(url.hostname or ""):  # NO_PROXY
        return None
    return urllib.request.getproxies_environment().get(url.scheme) or None


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
    """A client from ``kubeconfig``, else in-cluster credentials, else ``$KUBECONFIG`` or
    ``~/.kube/config``; :class:`~plumbing.kubeconfig.KubeConfigError` (a ValueError) says
    what is wrong with them."""
    return Kube(await load(kubeconfig=kubeconfig, context=context))
