"""The initial root token at a designated custodian, never mixed with the shares.

``unsealer init --root-token-custodian NAME`` (and ``custody import``) may leave the root token
with one custodian instead of a local file or the terminal. It sits apart from the shares, so
that nothing that reads shares ever sees it:

- a ``kubernetesSecret`` custodian keeps it under its own data key, ``rootTokenKey`` in the
  custody config (the config refuses a key that would read as a share key);
- a ``file`` custodian keeps it in its own 0600 file, ``rootTokenFile`` (never the share file);
- ``env`` and ``peer`` custodians cannot hold it (read-only, or not ours to write).

Storing is idempotent: the same token already held succeeds (a retry after a lost reply); a
different one is a :class:`~.custodian.CustodyConflict` unless ``replace``. Errors are built
from our words only, never from the token or a server body.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog

from plumbing.kube import SECRETS, STRATEGIC_MERGE_PATCH, Kube, KubeError
from unsealer.custody.config import (
    CustodianConfig,
    EnvironmentConfig,
    FileConfig,
    KubeSecretConfig,
    PeerConfig,
)
from unsealer.custody.custodian import CustodyConflict, CustodyError
from unsealer.custody.file import read_private_file, write_private_file
from unsealer.custody.kube_secret import api_error, decode_value, unreachable
from unsealer.init_output import RootToken
from unsealer.shares import zero

log = structlog.get_logger("unsealer.custody")

#: Same label as the share Secrets this project creates (see :mod:`.kube_secret`).
MANAGED_BY = {"app.kubernetes.io/managed-by": "vault-syncd-unsealer"}


class RootTokenStore(Protocol):
    """Where one custodian keeps the root token."""

    custodian: str

    def describe(self) -> str:
        """Where, in words (never the token)."""
        ...

    async def holds(self) -> bool:
        """Whether a root token is held there now."""
        ...

    async def store(self, token: RootToken, *, replace: bool = False) -> bool:
        """Hold ``token`` from now on; ``False`` when it already was (nothing written)."""
        ...


def root_token_problem(spec: CustodianConfig) -> str | None:
    """Why custodian ``spec`` cannot hold the root token (a sentence), or ``None``."""
    if isinstance(spec, PeerConfig | EnvironmentConfig):
        return (
            f"custodian {spec.name!r} cannot hold the root token: a {spec.kind} custodian is "
            "read-only to the unsealer (use a kubernetesSecret custodian with rootTokenKey or a "
            "file custodian with rootTokenFile)"
        )
    if isinstance(spec, KubeSecretConfig) and spec.root_token_key is None:
        return (
            f"custodian {spec.name!r} has no 'rootTokenKey' in the custody config (add e.g. "
            "rootTokenKey: root-token), so it cannot hold the root token"
        )
    if isinstance(spec, FileConfig) and spec.root_token_file is None:
        return (
            f"custodian {spec.name!r} has no 'rootTokenFile' in the custody config (a 0600 file "
            "of its own), so it cannot hold the root token"
        )
    if not isinstance(spec, KubeSecretConfig | FileConfig):
        return f"custodian {spec.name!r} cannot hold the root token"
    return None


def can_hold_root_token(spec: CustodianConfig) -> bool:
    return root_token_problem(spec) is None


def root_token_store(spec: CustodianConfig, *, kube: Kube | None) -> RootTokenStore:
    """The root token store of ``spec``; ``ValueError`` (with the reason) when it has none."""
    problem = root_token_problem(spec)
    if problem is not None:
        raise ValueError(problem)
    if isinstance(spec, KubeSecretConfig):
        assert spec.root_token_key is not None
        if kube is None:
            raise ValueError(f"custodian {spec.name!r}: a kubernetesSecret custodian needs a "
                             "Kubernetes client")
        return SecretRootTokenStore(
            custodian=spec.name, kube=kube, namespace=spec.namespace,
            secret_name=spec.secret_name, key=spec.root_token_key,
        )
    assert isinstance(spec, FileConfig) and spec.root_token_file is not None
    return FileRootTokenStore(custodian=spec.name, path=spec.root_token_file)


async def store_with_retries(
    store: RootTokenStore,
    token: RootToken,
    *,
    replace: bool = False,
    attempts: int = 4,
    retry_delay: float = 0.5,
) -> bool:
    """:meth:`RootTokenStore.store`, retried with backoff; a conflict is not retried."""
    for attempt in range(1, attempts + 1):
        try:
            return await store.store(token, replace=replace)
        except CustodyConflict:
            raise
        except CustodyError as exc:
            if attempt == attempts:
                raise
            delay = min(retry_delay * 2 ** (attempt - 1), 30.0)
            log.warning("custody.root_token.retry", custodian=store.custodian, attempt=attempt,
                        delay=delay, error=str(exc))
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _same(held: bytearray, token: RootToken) -> bool:
    return hmac.compare_digest(bytes(held), bytes(token.reveal().encode("ascii")))


def _conflict(custodian: str, where: str) -> CustodyConflict:
    return CustodyConflict(
        f"{where} already holds another root token; refusing to overwrite it (--replace "
        "overwrites it)",
        custodian=custodian,
    )


def _already_held(
    held: bytearray, token: RootToken, *, replace: bool, custodian: str, where: str
) -> bool:
    """Whether ``held`` is ``token`` already (a retry: nothing to write). Another token is a
    conflict unless ``replace``. ``held`` is wiped either way."""
    try:
        if _same(held, token):
            log.info("custody.root_token.already_stored", custodian=custodian)
            return True
    finally:
        zero(held)
    if not replace:
        raise _conflict(custodian, where)
    return False


class FileRootTokenStore:
    """The token alone in a 0600 file of ours (written beside and renamed: atomic)."""

    def __init__(self, *, custodian: str, path: Path) -> None:
        self.custodian = custodian
        self.path = path

    def describe(self) -> str:
        return f"file {self.path}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.custodian!r}: {self.describe()}>"

    async def holds(self) -> bool:
        held = await self._read()
        if held is None:
            return False
        try:
            return bool(held)
        finally:
            zero(held)

    async def store(self, token: RootToken, *, replace: bool = False) -> bool:
        held = await self._read()
        if held and _already_held(held, token, replace=replace, custodian=self.custodian,
                                  where=str(self.path)):
            return False
        content = bytearray(token.reveal().encode("ascii") + b"\n")
        try:
            await asyncio.to_thread(write_private_file, self.path, content, overwrite=True)
        except OSError as exc:
            raise CustodyError(
                f"cannot write {self.path}: {exc.strerror or type(exc).__name__}",
                custodian=self.custodian,
            ) from None
        finally:
            zero(content)
        log.info("custody.root_token.stored", custodian=self.custodian, replaced=bool(held))
        return True

    async def _read(self) -> bytearray | None:
        try:
            content = await asyncio.to_thread(read_private_file, self.path)
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            reason = exc.strerror or str(exc)
            raise CustodyError(f"refusing {self.path}: {reason}", custodian=self.custodian) \
                from None
        except OSError as exc:
            raise CustodyError(
                f"cannot read {self.path}: {exc.strerror or type(exc).__name__}",
                custodian=self.custodian,
            ) from None
        stripped = content.strip()
        zero(content)
        return stripped


class SecretRootTokenStore:
    """The token under its own data key of the custodian's Secret; share keys left alone."""

    def __init__(
        self, *, custodian: str, kube: Kube, namespace: str, secret_name: str, key: str
    ) -> None:
        self.custodian = custodian
        self.namespace = namespace
        self.secret_name = secret_name
        self.key = key
        self._kube = kube

    def describe(self) -> str:
        return f"Secret {self.namespace}/{self.secret_name} key {self.key!r}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.custodian!r}: {self.describe()}>"

    async def holds(self) -> bool:
        secret = await self._get()
        value = ((secret or {}).get("data") or {}).get(self.key)
        return bool(value)

    async def store(self, token: RootToken, *, replace: bool = False) -> bool:
        secret = await self._get()
        value = ((secret or {}).get("data") or {}).get(self.key)
        if value and _already_held(self._decode(value), token, replace=replace,
                                   custodian=self.custodian, where=self.describe()):
            return False
        encoded = base64.b64encode(token.reveal().encode("ascii")).decode("ascii")
        try:
            if secret is None:
                await self._kube.request(
                    "POST", SECRETS.path(namespace=self.namespace),
                    body={
                        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": self.secret_name, "namespace": self.namespace,
                                     "labels": MANAGED_BY},
                        "data": {self.key: encoded},
                    },
                )
            else:
                # Only this key; the resourceVersion makes it conditional (409 if someone wrote
                # in between, and the retry reads again).
                await self._kube.request(
                    "PATCH", SECRETS.path(namespace=self.namespace, name=self.secret_name),
                    body={
                        "metadata": {"resourceVersion": secret["metadata"]["resourceVersion"]},
                        "data": {self.key: encoded},
                    },
                    content_type=STRATEGIC_MERGE_PATCH,
                )
        except KubeError as exc:
            raise self._error("write", exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from None
        log.info("custody.root_token.stored", custodian=self.custodian, replaced=bool(value))
        return True

    async def _get(self) -> dict[str, Any] | None:
        try:
            return await self._kube.request(
                "GET", SECRETS.path(namespace=self.namespace, name=self.secret_name)
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise self._error("read", exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from None

    def _decode(self, value: Any) -> bytearray:
        return decode_value(value, where=self.describe(), custodian=self.custodian)

    def _error(self, verb: str, exc: KubeError) -> CustodyError:
        return api_error(verb, exc, namespace=self.namespace, name=self.secret_name,
                         custodian=self.custodian)

    def _unreachable(self, exc: BaseException) -> CustodyError:
        return unreachable(exc, namespace=self.namespace, name=self.secret_name,
                           custodian=self.custodian)
