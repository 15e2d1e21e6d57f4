"""Where the services find the API server and their credentials, without the typed client.

In a cluster: the ServiceAccount's token and CA files and ``KUBERNETES_SERVICE_HOST``/``PORT``;
the token file is read again every minute, since the kubelet rotates bound tokens. Elsewhere:
a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``), its current or
named context, with the fields a service's kubeconfig carries: ``server``,
``certificate-authority(-data)``, ``insecure-skip-tls-verify``, ``tls-server-name``,
``proxy-url``, ``token``, ``tokenFile``, ``client-certificate(-data)``/``client-key(-data)``,
``username``/``password``.

Credential plugins (``exec``, ``auth-provider``) and a ``$KUBECONFIG`` listing several files are
left to kubernetes-asyncio, imported only for them: importing it pulls in its ~700 generated
model classes, 34 MiB resident on 64-bit CPython, more than the rest of syncd together.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
CA_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
#: How long a token read from a file is used before the file is read again.
TOKEN_FILE_TTL = 60.0

Authorization = Callable[[], Awaitable[str | None]]


class KubeConfigError(ValueError):
    """The credentials cannot be loaded; the message names the file and the field."""


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """How to reach the API server: its URL, TLS, a proxy, and the Authorization header."""

    server: str
    ssl: ssl.SSLContext | None  #: None for plain http
    server_hostname: str | None = None
    proxy: str | None = None
    authorization: Authorization


async def load(*, kubeconfig: str | None = None, context: str | None = None,
               environ: Mapping[str, str] = os.environ) -> Credentials:
    """``kubeconfig`` if given, else the in-cluster ServiceAccount, else ``$KUBECONFIG`` or
    ``~/.kube/config`` (the order of kubernetes-asyncio and client-go)."""
    if not kubeconfig and environ.get("KUBERNETES_SERVICE_HOST"):
        return await asyncio.to_thread(in_cluster, environ=environ)
    listed = environ.get("KUBECONFIG", "").strip(os.pathsep)
    if not kubeconfig and os.pathsep in listed:
        return await _through_kubernetes_asyncio(None, context=context)
    path = kubeconfig or listed or "~/.kube/config"
    # Small local files, read once at start-up; off the loop all the same.
    credentials = await asyncio.to_thread(from_file, path, context=context)
    if credentials is None:
        home = Path(path).expanduser()  # noqa: ASYNC240 - no I/O: $HOME
        return await _through_kubernetes_asyncio(home, context=context)
    return credentials


def in_cluster(*, environ: Mapping[str, str] = os.environ, token_file: Path = TOKEN_FILE,
               ca_file: Path = CA_FILE) -> Credentials:
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"
                              " must both be set")
    if not token_file.is_file():
        raise KubeConfigError(f"in-cluster: no ServiceAccount token at {token_file}")
    if not ca_file.is_file():
        raise KubeConfigError(f"in-cluster: no CA certificate at {ca_file}")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Credentials(server=server, ssl=ssl.create_default_context(cafile=str(ca_file)),
                       authorization=_TokenFile(token_file))


def from_file(file: str, *, context: str | None = None) -> Credentials | None:
    """The credentials of a kubeconfig's context; None if they come from a plugin."""
    path = Path(file).expanduser()
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # Not the parser's text: it quotes the offending line, which may hold a token.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise KubeConfigError(f"{path}: not YAML{where}") from None
    if not isinstance(document, dict):
        raise KubeConfigError(f"{path}: not a kubeconfig (no mapping at the top)")
    name = context or document.get("current-context")
    if not name:
        raise KubeConfigError(f"{path}: no current-context, and no context was given")
    chosen = _named(document, "contexts", "context", name, path)
    cluster = _named(document, "clusters", "cluster", chosen.get("cluster"), path)
    user = _named(document, "users", "user", chosen.get("user"), path) \
        if chosen.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        return None
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("http://", "https://")):
        raise KubeConfigError(f"{path}: cluster {chosen.get('cluster')!r}: server must be an"
                              " http(s) URL")
    base = path.parent
    context_ssl = None
    if server.startswith("https://"):
        context_ssl = _ssl(cluster, user, base=base, where=f"{path}: context {name!r}")
    return Credentials(
        server=server.rstrip("/"), ssl=context_ssl,
        server_hostname=cluster.get("tls-server-name") or None,
        proxy=cluster.get("proxy-url") or None,
        authorization=_authorization(user, base=base),
    )


def _named(document: Mapping[str, Any], section: str, field: str, name: object,
           path: Path) -> dict[str, Any]:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(field)
            return value if isinstance(value, dict) else {}
    raise KubeConfigError(f"{path}: {section}: no entry named {name!r}")


def _file(value: object, base: Path) -> str:
    return str(base / str(value))  # relative paths are relative to the kubeconfig


def _ssl(cluster: Mapping[str, Any], user: Mapping[str, Any], *, base: Path,
         where: str) -> ssl.SSLContext:
    try:
        if cluster.get("certificate-authority-data"):
            context = ssl.create_default_context(cadata=base64.b64decode(
                cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            context = ssl.create_default_context(
                cafile=_file(cluster["certificate-authority"], base))
        else:
            context = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if user.get("client-certificate-data") or user.get("client-certificate"):
            _load_client_certificate(context, user, base=base)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise KubeConfigError(f"{where}: TLS settings unusable: {exc}") from None
    return context


def _load_client_certificate(context: ssl.SSLContext, user: Mapping[str, Any], *,
                             base: Path) -> None:
    if user.get("client-certificate"):
        context.load_cert_chain(_file(user["client-certificate"], base),
                                _file(user["client-key"], base)
                                if user.get("client-key") else None)
        return
    # The ssl module loads a chain only from files: a private file, gone once loaded.
    with tempfile.TemporaryDirectory(prefix="kubeconfig-") as directory:
        certificate, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
        certificate.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user.get("client-key-data") or ""))
        context.load_cert_chain(str(certificate), str(key))


def _authorization(user: Mapping[str, Any], *, base: Path) -> Authorization:
    if user.get("token"):
        return _fixed(f"Bearer {user['token']}")
    if user.get("tokenFile"):
        return _TokenFile(Path(_file(user["tokenFile"], base)))
    if user.get("username") and user.get("password"):
        pair = f"{user['username']}:{user['password']}".encode()
        return _fixed(f"Basic {base64.b64encode(pair).decode()}")
    return _fixed(None)


def _fixed(value: str | None) -> Authorization:
    async def authorization() -> str | None:
        return value

    return authorization


class _TokenFile:
    """A bearer token from a file that someone else rotates: read again every minute."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._token = ""
        self._read_at = float("-inf")

    async def __call__(self) -> str | None:
        if time.monotonic() - self._read_at > TOKEN_FILE_TTL:
            try:
                self._token = self._path.read_text().strip()  # a small local file
            except OSError as exc:
                if not self._token:
                    raise KubeConfigError(f"token file {self._path}: {exc.strerror}") from None
            self._read_at = time.monotonic()
        return f"Bearer {self._token}"


async def _through_kubernetes_asyncio(path: Path | None, *, context: str | None) -> Credentials:
    """Credential plugins and merged kubeconfigs, as kubernetes-asyncio resolves them."""
    from kubernetes_asyncio import client, config  # noqa: PLC0415 - 34 MiB: only when needed

    configuration = client.Configuration()
    try:
        await config.load_kube_config(
            config_file=str(path) if path else None, context=context,
            client_configuration=configuration, persist_config=False,
        )
    except config.ConfigException as exc:
        raise KubeConfigError(f"{path or '$KUBECONFIG'}: {exc}") from None
    host = str(configuration.host)
    context_ssl = None
    if host.startswith("https://"):
        context_ssl = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context_ssl.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            context_ssl.check_hostname = False
            context_ssl.verify_mode = ssl.CERT_NONE

    async def authorization() -> str | None:
        # The plugin's token ("Bearer ..."), refreshed by its hook when it expires.
        token: str | None = await configuration.get_api_key_with_prefix("BearerToken")
        return token

    return Credentials(server=host.rstrip("/"), ssl=context_ssl,
                       server_hostname=configuration.tls_server_name or None,
                       proxy=configuration.proxy or None, authorization=authorization)
