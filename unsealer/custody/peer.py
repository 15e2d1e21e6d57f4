"""Shares held by another unsealer, released over mutual TLS only while the pod is sealed.

Split custody across machines: the unsealer on node B holds shares that the unsealer on node A
lacks, and hands them over when, and only when, a Vault pod really is sealed. Each side proves
who it is with a certificate from the peer CA; a stolen client certificate alone gets nothing
from a healthy cluster, because the server asks its *own* view of the pod (``is_sealed``,
wired by the caller to the same checks the unsealer makes before sending a share: the pod is
one of Vault's StatefulSet, its server proved the pod's name over TLS, and it reports the
recorded threshold) before releasing anything. Only the certificate names in
``allowedPeers`` are served (a server without that list refuses to start: any certificate of
the CA is too many), each at most ``burst`` requests at once and one more every
``refill_seconds``. Every release and every refusal is audited with the peer's name, the pod
and share fingerprints, never the shares.

Wire: ``POST /v1/release`` with ``{"pod": "<name>"}``; ``200 {"shares": ["<base64>", ...]}``,
or ``{"error": "<reason>"}`` with 400 (bad request), 403 (peer not allowed), 409 (pod not
sealed), 429 (too many requests; ``Retry-After``) or 503 (the server cannot tell, or its
custodians failed). A client whose certificate is missing or from another CA never gets past
the TLS handshake.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog
from aiohttp import web

from plumbing.tls import ca_context, load_cert_chain
from unsealer.custody.custodian import Custodian, CustodyError
from unsealer.shares import FingerprintKey, Share, ShareError, wipe_all

log = structlog.get_logger("unsealer.custody.peer")

RELEASE_PATH = "/v1/release"
IsSealed = Callable[[str], Awaitable[bool]]

# A pod name is a DNS subdomain; anything else is not worth asking is_sealed about.
_POD_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def server_ssl_context(*, ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS for the peer server: our certificate, and a client certificate from ``ca_file``.

    Unusable material raises :class:`plumbing.tls.TLSMaterialError` naming the field."""
    context = ca_context(what=f"caFile {ca_file}", cafile=ca_file,
                         purpose=ssl.Purpose.CLIENT_AUTH)
    load_cert_chain(context, cert_file=cert_file, key_file=key_file,
                    cert_what=f"certFile {cert_file}", key_what=f"keyFile {key_file}")
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_ssl_context(*, ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS for the peer client: verify the server against ``ca_file``; present our cert."""
    context = ca_context(what=f"caFile {ca_file}", cafile=ca_file)
    load_cert_chain(context, cert_file=cert_file, key_file=key_file,
                    cert_what=f"certFile {cert_file}", key_what=f"keyFile {key_file}")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class PeerCustodian:
    """The client side: a custodian whose shares another unsealer holds."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        ssl_context: ssl.SSLContext,
        server_name: str | None = None,
        timeout: float = 10.0,
        rate_limit_patience: float = 0.0,
    ) -> None:
        self._name = name
        self.url = url.rstrip("/")
        self.server_name = server_name
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        #: How long one fetch may wait, in all, for the ``Retry-After`` of the peer's 429s.
        self._patience = rate_limit_patience

    @property
    def name(self) -> str:
        return self._name

    def describe(self) -> str:
        pinned = f" (server name {self.server_name})" if self.server_name else ""
        return f"peer {self.url}{pinned}"

    def __repr__(self) -> str:
        return f"<PeerCustodian {self._name!r}: {self.describe()}>"

    async def store(self, shares: Sequence[Share], *, replace: bool = False) -> None:
        raise CustodyError(
            "a peer's shares are stored on the peer (run the import there)", custodian=self._name
        )

    async def fetch(self, *, pod: str | None = None) -> list[Share]:
        if pod is None:
            raise CustodyError(
                "a peer releases shares only to unseal a named pod", custodian=self._name
            )
        waited = 0.0
        while True:
            status, body, retry_after = await self._ask(pod)
            # Rate limited: wait as long as the peer says, rather than fail the attempt and
            # come back on our own backoff (which asked again too early, or far too late).
            if status != 429 or retry_after is None or waited + retry_after > self._patience:
                break
            await asyncio.sleep(retry_after)
            waited += retry_after
        if status != 200:
            raise CustodyError(
                f"peer {self.url} refused ({status}): {_error_of(body)}", custodian=self._name
            )
        return self._shares_of(body)

    async def _ask(self, pod: str) -> tuple[int, bytes, float | None]:
        """One release request: the status, the body and the Retry-After in seconds."""
        try:
            # One session per fetch: unsealing is rare, and nothing stays open in between.
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(
                    f"{self.url}{RELEASE_PATH}",
                    json={"pod": pod},
                    ssl=self._ssl,
                    server_hostname=self.server_name,
                ) as response,
            ):
                return response.status, await response.read(), _seconds(
                    response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise CustodyError(
                f"peer {self.url} unreachable or refused TLS: {type(exc).__name__}",
                custodian=self._name,
            ) from None

    def _shares_of(self, body: bytes) -> list[Share]:
        try:
            texts = json.loads(body)["shares"]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise CustodyError(
                f"peer {self.url} sent a malformed reply", custodian=self._name
            ) from None
        shares: list[Share] = []
        try:
            for index, text in enumerate(texts, start=1):
                shares.append(Share.parse(text, origin=f"{self._name}/{index}"))
        except ShareError as exc:
            wipe_all(shares)
            raise CustodyError(f"peer {self.url} sent {exc}", custodian=self._name) from None
        return shares


class _RateLimit:
    """A token bucket per peer: ``burst`` requests at once, one more per ``refill_seconds``."""

    def __init__(self, *, burst: int, refill_seconds: float) -> None:
        self._burst = burst
        self._refill = refill_seconds
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, peer: str) -> float:
        """0 when ``peer`` may go ahead (a token is taken), else the seconds to wait."""
        now = time.monotonic()
        tokens, then = self._buckets.get(peer, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - then) / self._refill)
        if tokens < 1:
            self._buckets[peer] = (tokens, now)
            return (1 - tokens) * self._refill
        self._buckets[peer] = (tokens - 1, now)
        return 0.0


class PeerServer:
    """The server side: releases the ``sources`` custodians' shares to authenticated peers.

    ``allowed_peers`` pins peer names (certificate CN or DNS SAN) and may not be empty. Use as
    ``async with PeerServer(...) as server`` or :meth:`start`/:meth:`close`.
    """

    def __init__(
        self,
        *,
        sources: Sequence[Custodian],
        is_sealed: IsSealed,
        ssl_context: ssl.SSLContext,
        fingerprint_key: FingerprintKey,
        allowed_peers: Collection[str],
        host: str = "0.0.0.0",  # a peer server serves other nodes
        port: int = 8443,
        burst: int = 10,
        refill_seconds: float = 6.0,
    ) -> None:
        if not allowed_peers:
            raise ValueError("a peer server needs allowedPeers: the certificate names it serves")
        self._sources = tuple(sources)
        self._is_sealed = is_sealed
        self._ssl = ssl_context
        self._fingerprint_key = fingerprint_key
        self._allowed = frozenset(allowed_peers)
        self._limit = _RateLimit(burst=burst, refill_seconds=refill_seconds)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_post(RELEASE_PATH, self._release)

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._runner is None:
            raise RuntimeError("the peer server is not started")
        for address in self._runner.addresses:
            return int(address[1])
        raise RuntimeError("the peer server has no listening socket")

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        log.info("custody.peer.listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _release(self, request: web.Request) -> web.Response:
        transport = request.transport
        certificate = transport.get_extra_info("peercert") if transport else None
        names = _names_in(certificate)
        allowed = [name for name in names if name in self._allowed]
        # The audited identity: the allowed name the certificate carries, else its first name.
        peer = allowed[0] if allowed else (names[0] if names else "?")
        refused = log.bind(peer=peer, remote=request.remote)
        if not certificate:
            # Unreachable with CERT_REQUIRED; kept so that a misconfigured context fails closed.
            refused.warning("custody.peer.refused", reason="no client certificate")
            return _error(401, "a client certificate is required")
        if not allowed:
            refused.warning("custody.peer.refused", reason="peer not allowed", names=names)
            return _error(403, "this peer is not allowed")
        wait = self._limit.take(peer)
        if wait:
            refused.warning("custody.peer.refused", reason="rate limited")
            response = _error(429, "too many requests from this peer")
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        pod = await _pod_of(request)
        if pod is None:
            refused.warning("custody.peer.refused", reason="bad request")
            return _error(400, 'expected {"pod": "<pod name>"}')
        refused = refused.bind(pod=pod)
        try:
            sealed = await self._is_sealed(pod)
        except Exception as exc:  # any failure to know means "don't release"
            refused.warning("custody.peer.refused", reason="seal state unknown or not our Vault",
                            error=str(exc) or type(exc).__name__)
            return _error(503, "cannot tell whether the pod is a sealed Vault of ours")
        if not sealed:
            refused.warning("custody.peer.refused", reason="pod not sealed")
            return _error(409, "the pod is not sealed here")
        try:
            shares = await self._gather(pod)
        except CustodyError as exc:
            refused.error("custody.peer.refused", reason="custody failed", error=str(exc))
            return _error(503, "this peer's custodians failed")
        try:
            fingerprints = [share.fingerprint(self._fingerprint_key) for share in shares]
            body = json.dumps({"shares": [share.base64() for share in shares]})
        finally:
            wipe_all(shares)
        log.info(
            "custody.peer.released",
            peer=peer,
            remote=request.remote,
            pod=pod,
            count=len(fingerprints),
            fingerprints=fingerprints,
        )
        return web.Response(body=body.encode("ascii"), content_type="application/json")

    async def _gather(self, pod: str) -> list[Share]:
        results = await asyncio.gather(
            *(source.fetch(pod=pod) for source in self._sources), return_exceptions=True
        )
        shares = [share for result in results if isinstance(result, list) for share in result]
        for result in results:
            if isinstance(result, BaseException):
                wipe_all(shares)
                if isinstance(result, CustodyError):
                    raise result
                raise CustodyError(f"{type(result).__name__}", custodian="peer-server")
        return shares


def _names_in(certificate: Any) -> list[str]:
    """Subject CN, then DNS SANs, from ``SSLSocket.getpeercert()``'s dictionary."""
    if not isinstance(certificate, dict):
        return []
    names = [
        value
        for rdn in certificate.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    ]
    names += [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    return names


async def _pod_of(request: web.Request) -> str | None:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    pod = body.get("pod") if isinstance(body, dict) else None
    return pod if isinstance(pod, str) and _POD_NAME.fullmatch(pod) else None


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _seconds(header: str | None) -> float | None:
    """A ``Retry-After`` of delay-seconds (the form the peer server sends), else None."""
    if header is None or not header.strip().isdigit():
        return None
    return float(header)


def _error_of(body: bytes) -> str:
    # The server's error texts are its own words; still, show only a short, printable reason.
    try:
        reason = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        reason = ""
    if not isinstance(reason, str) or not reason.isprintable():
        return "no reason given"
    return reason[:120]
