"""Credentials without kubernetes-asyncio's typed client: kubeconfig fields over real TLS, the
in-cluster ServiceAccount with its rotating token file, and the credential plugins still
resolved by kubernetes-asyncio (imported for them only)."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from plumbing import kubeconfig
from plumbing.kube import connect
from plumbing.kubeconfig import KubeConfigError, in_cluster
from testbed.kube import Kube, running_kube
from testbed.pki import Authority

ROOT = Path(__file__).resolve().parents[2]


def _kubeconfig(path: Path, *, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "here",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u"}}],
    }))
    return str(path)


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    async with running_kube(controllers=()) as k:
        yield k


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[Authority, int, list[str]]]:
    """An HTTPS server that wants a client certificate from our CA; it records who called."""
    authority = Authority.create("kube", tmp_path)
    cert, key = authority.issue("kubernetes", server=True, ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(authority.ca_file))
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    callers: list[str] = []

    async def namespaces(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(pair[0] for pair in (peer or {}).get("subject", ()))
        callers.append(f"{subject.get('commonName')} {request.headers.get('Authorization')}")
        return web.json_response({"kind": "NamespaceList", "items": []})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces", namespaces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield authority, port, callers
    finally:
        await runner.cleanup()


async def _configmaps(client: Any) -> str:
    """The kind listed (only ServiceAccounts granted ``view`` in default may list)."""
    listed = await client.request("GET", "/api/v1/namespaces/default/configmaps")
    return str(listed["kind"])


async def _namespaces(config: str) -> Any:
    """GET the namespaces through a client made from kubeconfig ``config``."""
    kube = await connect(kubeconfig=config)
    try:
        return await kube.request("GET", "/api/v1/namespaces")
    finally:
        await kube.close()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def test_inline_ca_and_client_certificate_over_mutual_tls(
    tls_server: tuple[Authority, int, list[str]], tmp_path: Path
) -> None:
    authority, port, callers = tls_server
    cert, key = authority.issue("syncd")
    config = _kubeconfig(
        tmp_path / "config",
        cluster={"server": f"https://127.0.0.1:{port}",
                 "certificate-authority-data": _b64(authority.ca_file)},
        user={"client-certificate-data": _b64(cert), "client-key-data": _b64(key)},
    )
    assert (await _namespaces(config))["kind"] == "NamespaceList"
    assert callers == ["syncd None"]


async def test_certificate_files_relative_to_the_kubeconfig_and_a_server_name(
    tls_server: tuple[Authority, int, list[str]], tmp_path: Path
) -> None:
    authority, port, callers = tls_server
    cert, key = authority.issue("unsealer")
    config = _kubeconfig(
        tmp_path / "config",
        # By IP, checked as the certificate's DNS name: tls-server-name is what is verified.
        cluster={"server": f"https://127.0.0.1:{port}", "tls-server-name": "kubernetes",
                 "certificate-authority": authority.ca_file.name},
        user={"client-certificate": cert.name, "client-key": key.name, "token": "t-1"},
    )
    await _namespaces(config)
    assert callers == ["unsealer Bearer t-1"]


async def test_an_unknown_ca_is_refused(
    tls_server: tuple[Authority, int, list[str]], tmp_path: Path
) -> None:
    _, port, callers = tls_server
    stranger = Authority.create("stranger", tmp_path)
    config = _kubeconfig(tmp_path / "config",
                         cluster={"server": f"https://127.0.0.1:{port}",
                                  "certificate-authority": str(stranger.ca_file)},
                         user={"token": "t"})
    with pytest.raises(Exception, match="certificate verify failed"):
        await _namespaces(config)
    assert callers == []


async def test_a_token_file_is_read_again_once_a_minute(
    kube: Kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-valid-token\n")
    config = _kubeconfig(tmp_path / "config", cluster={"server": kube.url},
                         user={"tokenFile": "token"})
    client = await connect(kubeconfig=config)
    try:
        with pytest.raises(Exception, match="401"):
            await _configmaps(client)
        token.write_text(kube.admin.mint_token("default", "rotated") + "\n")  # the kubelet
        kube.admin.grant("default", "rotated", "view", in_namespace="default")
        with pytest.raises(Exception, match="401"):  # still the cached one, within the minute
            await _configmaps(client)
        monkeypatch.setattr(kubeconfig, "TOKEN_FILE_TTL", 0.0)  # the minute is up
        assert await _configmaps(client) == "ConfigMapList"
    finally:
        await client.close()


def test_in_cluster_reads_the_service_account_and_the_service_address(tmp_path: Path) -> None:
    authority = Authority.create("cluster", tmp_path)
    token = tmp_path / "token"
    token.write_text("sa-token")
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    credentials = in_cluster(environ=environ, token_file=token, ca_file=authority.ca_file)
    assert credentials.server == "https://[fd00::1]:443"
    assert credentials.ssl is not None and credentials.ssl.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(KubeConfigError, match=r"no ServiceAccount token at .*/missing"):
        in_cluster(environ=environ, token_file=tmp_path / "missing", ca_file=authority.ca_file)


async def test_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", cluster={"server": "https://k:6443"},
                         user={"token": "t"})
    with pytest.raises(KubeConfigError, match=r"config: contexts: no entry named 'elsewhere'"):
        await connect(kubeconfig=config, context="elsewhere")
    with pytest.raises(KubeConfigError, match=r"nowhere: cannot be read"):
        await connect(kubeconfig=str(tmp_path / "nowhere"))
    bad = _kubeconfig(tmp_path / "bad", cluster={"server": "k:6443"}, user={})
    with pytest.raises(KubeConfigError, match=r"cluster 'c': server must be an http\(s\) URL"):
        await connect(kubeconfig=bad)


async def test_an_exec_plugin_is_resolved_by_kubernetes_asyncio(kube: Kube,
                                                                tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential",
                  "status": {"token": kube.admin.mint_token("default", "from-plugin")}}
    plugin.write_text(f"print({json.dumps(json.dumps(credential))})\n")
    config = _kubeconfig(tmp_path / "config", cluster={"server": kube.url}, user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
        "args": [str(plugin)], "interactiveMode": "Never"}})
    client = await connect(kubeconfig=config)
    try:
        # Refused by name: the plugin's token was sent (no token at all is the admin here).
        with pytest.raises(Exception, match=r"403 .*system:serviceaccount:default:from-plugin"):
            await _configmaps(client)
    finally:
        await client.close()


def test_the_services_do_not_import_the_typed_client() -> None:
    probe = ("import sys, syncd.operator, unsealer.service; "
             "print(sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio')))")
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert found == "[]"


async def test_the_environment_names_the_proxy_unless_no_proxy_exempts_the_server(
    kube: Kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read once, when the client is made; requests go through the proxy it names."""
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))  # a forward proxy gets the absolute URL
        return web.json_response({"kind": "NamespaceList", "items": []})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = _kubeconfig(tmp_path / "config", cluster={"server": kube.url}, user={})
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        proxied = await connect(kubeconfig=config)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = await connect(kubeconfig=config)
        try:
            await proxied.request("GET", "/api/v1/namespaces")
            assert seen == [f"{kube.url}/api/v1/namespaces"]
            listed = await direct.request("GET", "/api/v1/namespaces")
            assert len(seen) == 1 and listed["items"]  # the emulation's namespaces
        finally:
            await proxied.close()
            await direct.close()
    finally:
        await runner.cleanup()
