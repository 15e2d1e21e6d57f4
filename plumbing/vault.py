"""Vault access for asyncio services: hvac in a bounded thread pool, and aiohttp for hot reads.

hvac is synchronous (requests underneath). Calling it on the event loop would stall every
watch and timer of the service for the length of a Vault round trip, or of a Vault timeout, so
every hvac call goes through :class:`VaultPool`, whose size bounds the concurrent Vault requests
of the process as well.

The request a service makes most often (syncd: one KV read per refresh, thousands a minute)
does not go through hvac: requests' per-request preparation, the hand-off to a thread and back
and the GIL switches made a KV read cost 0.68 ms of CPU, against 0.22 ms as an aiohttp request
on the event loop. :class:`VaultHTTP` is that path: one aiohttp session per Vault origin, with
the same settings an hvac client of :func:`make_client` gets (CA, verification, proxy read
once, timeout), no redirect followed, no cookie kept, and failures named as requests names them
(``ReadTimeout``, ``SSLError``...), never with a header or a body in the message.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import ssl
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import hvac
import requests
import yarl

from plumbing.version import VERSION

T = TypeVar("T")


class VaultPool:
    """A bounded pool of threads for blocking Vault calls."""

    def __init__(self, *, max_workers: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vault")

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        # Carry the context (the current span) into the thread, so spans started there nest.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class VaultClient(hvac.Client):  # type: ignore[misc]
    """An hvac client (logins, other engines: call it through :class:`VaultPool`) with
    :meth:`request_async`, the same requests on the event loop through ``http``, with the same
    token and headers."""

    def __init__(self, *, http: VaultHTTP | None = None,
                 headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http = http
        self.extra_headers = dict(headers or {})

    async def request_async(
        self, method: str, path: str, *, namespace: str | None = None,
        query: Mapping[str, str] | None = None,
    ) -> VaultAnswer:
        if self.http is None:
            raise RuntimeError("this Vault client was made without an aiohttp path (http=)")
        return await self.http.request(method, path, token=self.token, namespace=namespace,
                                       query=query, headers=self.extra_headers)


def make_client(
    *,
    address: str,
    token: str | None = None,
    verify: bool | str = True,
    timeout: float = 10.0,
    namespace: str | None = None,
    headers: Mapping[str, str] | None = None,
    http: VaultHTTP | None = None,
) -> VaultClient:
    """An hvac client whose requests return raw responses (the caller branches on status).

    ``verify`` is a CA bundle path, or a boolean. The raw adapter is used so a 404 for a
    deleted kv-v2 version can still be read: hvac's JSON adapter raises and drops the body.
    ``http``, if given, is the aiohttp path to the same address (:meth:`VaultClient.request_async`).
    """
    session = requests.Session()
    # What requests would read from the environment on every request (the proxy variables,
    # ~/.netrc, the CA bundle variables: 7 % of an unchanged refresh's CPU), read once here.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(address)  # honours NO_PROXY
    verify = environment_verify(verify)
    # hvac takes ``verify`` from a session it is given (and drops its own argument), so the
    # session must carry it: else a CA bundle or verify=False would be silently ignored.
    session.verify = verify
    if headers:
        session.headers.update(headers)
    return VaultClient(
        http=http,
        headers=headers,
        url=address,
        token=token,
        verify=verify,
        timeout=timeout,
        namespace=namespace,
        session=session,
        adapter=hvac.adapters.RawAdapter,
    )


def environment_verify(verify: bool | str) -> bool | str:
    """``verify`` with the CA bundle variables requests honours (``True``: the default)."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS settings requests would use for ``verify`` (a CA file or folder, or a boolean;
    ``True`` is requests' own bundle, certifi's, not the system's)."""
    verify = environment_verify(verify)
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    where = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    if os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where)


class VaultTransportError(Exception):
    """A request that got no answer. The message is only its kind, as requests names it
    (``ReadTimeout``, ``ConnectTimeout``, ``SSLError``, ``ProxyError``, ``ConnectionError``,
    ``ResponseTooLarge``), so that nothing of the request (headers, token) can be in it."""


@dataclass(frozen=True, slots=True)
class VaultAnswer:
    """Vault's answer: the status and the raw body (secret: never shown)."""

    status: int
    body: bytes = field(repr=False)


#: No Vault answer syncd reads is larger (a Secret holds at most 1 MiB, base64 inflates it).
MAX_ANSWER_BYTES = 16 * 2**20


class VaultHTTP:
    """Requests to one Vault address over one aiohttp session, on the event loop.

    ``allows`` is checked against every URL before it is sent (the origin pin); redirects are
    answers, not followed. ``server_name`` is the name for SNI and the certificate check
    instead of the address's host. ``timeout`` bounds the connect and each read, as requests'
    timeout does. The proxy is read from the environment once, here (``NO_PROXY`` honoured).
    """

    def __init__(
        self, *, address: str, verify: bool | str = True, server_name: str | None = None,
        timeout: float = 10.0, allows: Callable[[str], bool] | None = None,
    ) -> None:
        self._base = address.rstrip("/")
        self._ssl = ssl_context(verify) if address.lower().startswith("https:") else None
        self._server_name = server_name
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                              sock_read=timeout)
        self._allows = allows
        proxies = requests.utils.get_environ_proxies(address)
        self._proxy = requests.utils.select_proxy(address, proxies) or None
        self._session: aiohttp.ClientSession | None = None
        #: Requests under way; a retired session is closed once none is.
        self.in_flight = 0

    @property
    def closed(self) -> bool:
        return self._session is not None and self._session.closed

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running loop, on first use
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
                cookie_jar=aiohttp.DummyCookieJar(),  # shared by tenants: nothing carried over
                headers={"User-Agent": f"vault-syncd/{VERSION}", "X-Vault-Request": "true"},
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self, method: str, path: str, *, token: str | None = None, namespace: str | None = None,
        query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
    ) -> VaultAnswer:
        """``method`` ``path`` (already quoted, e.g. ``v1/secret/data/app``) with ``token``.

        Raises :class:`VaultTransportError` when no answer came; any status is an answer.
        """
        url = yarl.URL(f"{self._base}/{path}", encoded=True)
        if query:
            url = url.with_query(query)
        if self._allows is not None and not self._allows(str(url)):
            raise VaultTransportError("ForeignAddress")
        sent = dict(headers or {})
        if token:
            sent["X-Vault-Token"] = token
        if namespace:
            sent["X-Vault-Namespace"] = namespace
        self.in_flight += 1
        try:
            async with self._client().request(
                method, url, headers=sent, allow_redirects=False, proxy=self._proxy,
                server_hostname=self._server_name,
            ) as response:
                length = response.content_length
                if length is not None:
                    if length > MAX_ANSWER_BYTES:
                        raise VaultTransportError("ResponseTooLarge")
                    # The parser stops at Content-Length: one read, no chunk loop (~10 us of
                    # the ~85 us of CPU a request costs).
                    return VaultAnswer(response.status, await response.read())
                chunks, size = [], 0  # chunked: counted as it comes
                async for chunk in response.content.iter_chunked(2**16):
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise VaultTransportError("ResponseTooLarge")
                    chunks.append(chunk)
                return VaultAnswer(response.status, b"".join(chunks))
        except VaultTransportError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise VaultTransportError(_kind(exc)) from None
        finally:
            self.in_flight -= 1


def _kind(exc: BaseException) -> str:
    """What went wrong, in requests' words (the names users and tests know)."""
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return "SSLError"
    if isinstance(exc, (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)):
        return "ProxyError"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, TimeoutError):  # the socket read timeout is one too
        return "ReadTimeout"
    return "ConnectionError"
