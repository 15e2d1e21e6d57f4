"""Vault access for asyncio services: hvac clients run in a bounded thread pool.

hvac is synchronous (requests underneath). Calling it on the event loop would stall every
watch and timer of the service for the length of a Vault round trip, or of a Vault timeout, so
every call goes through :class:`VaultPool`, whose size bounds the concurrent Vault requests of
the process as well.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import hvac
import requests

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


def make_client(
    *,
    address: str,
    token: str | None = None,
    verify: bool | str = True,
    timeout: float = 10.0,
    namespace: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> hvac.Client:
    """An hvac client whose requests return raw responses (the caller branches on status).

    ``verify`` is a CA bundle path, or a boolean. The raw adapter is used so a 404 for a
    deleted kv-v2 version can still be read: hvac's JSON adapter raises and drops the body.
    """
    session = requests.Session()
    # What requests would read from the environment on every request (the proxy variables,
    # ~/.netrc, the CA bundle variables: 7 % of an unchanged refresh's CPU), read once here.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(address)  # honours NO_PROXY
    if verify is True:
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") \
            or True
    # hvac takes ``verify`` from a session it is given (and drops its own argument), so the
    # session must carry it: else a CA bundle or verify=False would be silently ignored.
    session.verify = verify
    if headers:
        session.headers.update(headers)
    return hvac.Client(
        url=address,
        token=token,
        verify=verify,
        timeout=timeout,
        namespace=namespace,
        session=session,
        adapter=hvac.adapters.RawAdapter,
    )
