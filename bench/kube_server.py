"""The Kubernetes emulation in a process of its own, with a control port for the benchmarks.

The API server is the testbed's (``testbed.kube.running_kube``); beside it a small aiohttp app
on another port does what a benchmark driver needs in-process and uncounted:

- ``POST /setup``: CRDs, syncd's RBAC, namespaces, the VaultConnection and VaultAuth, and a
  kubeconfig for syncd's ServiceAccount (a minted TokenRequest token): syncd is authorised
  as it would be in a cluster.
- ``POST /static-secrets``: create (server-side apply, as kubectl does) many
  VaultStaticSecrets, a chunk at a time so the API server keeps serving meanwhile.
- ``GET|DELETE /requests``: the API server's request counts (what syncd asked for).
- ``GET /requests/users``: requests per user (syncd's ServiceAccount apart from the driver's
  admin requests), reset with the others.
- ``POST /faults`` ``{"kind": "error", "code": 409, "verbs": ["update"], ...}`` (the arguments
  of ``kube.faults.add``, ``"user"`` included), ``DELETE /faults``: fault injection (``bench
  faults``); ``GET /faults/held``: the requests a latency fault holds now (``Faults.held``:
  verb, resource, name, user, the client's port, until when), so a driver can act while a
  write is in flight.
- ``POST /watches/cut``, ``POST /watches/expire``: every open watch cut, or ended with a 410
  ERROR event after the history is forgotten (``Kube.cut_watches``, ``Kube.expire_watches``).
- ``POST /restart`` ``{"down": 2}``: the API server restarts on its port with its state kept,
  every watch cut (``Kube.restart_server``).

Run as ``python -m bench.kube_server --dir DIR``; ``DIR/kube.json`` appears when it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from testbed.kube import Kube, running_kube

ROOT = Path(__file__).resolve().parent.parent
GROUP_VERSION = "secrets.vault-syncd.dev/v1beta1"
NAMESPACE = "bench"
SYNCD_NAMESPACE = "vault-syncd"


def static_secret(index: int, *, refresh: float, template: bool = False,
                  instant: bool = False) -> dict[str, Any]:
    """VaultStaticSecret ``s<index>`` of Vault path ``app/<index>``; with ``template``, the
    Secret also gets a key rendered from a (Jinja2) template: a template worker runs; with
    ``instant``, ``syncConfig.instantUpdates``."""
    obj: dict[str, Any] = {
        "apiVersion": GROUP_VERSION, "kind": "VaultStaticSecret",
        "metadata": {"name": f"s{index}", "namespace": NAMESPACE},
        "spec": {"mount": "secret", "path": f"app/{index}", "type": "kv-v2",
                 "refreshAfter": f"{refresh:g}s",
                 "destination": {"name": f"s{index}", "create": True}},
    }
    if instant:
        obj["spec"]["syncConfig"] = {"instantUpdates": True}
    if template:
        obj["spec"]["destination"]["transformation"] = {"templates": {
            "LENGTH": {"text": "{{!jinja2}}\n{{ secrets.VALUE | length }}"}}}
    return obj


def _app(kube: Kube, directory: Path) -> web.Application:
    async def setup(request: web.Request) -> web.Response:
        body = await request.json()
        for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
            kube.admin.apply_yaml(path.read_text())
        for namespace in (SYNCD_NAMESPACE, NAMESPACE):
            kube.admin.create_namespace(namespace)
        kube.admin.apply_yaml((ROOT / "manifests" / "syncd" / "rbac.yaml").read_text())
        # The token is read from the namespace of each VaultStaticSecret.
        kube.admin.apply({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "vault-token", "namespace": NAMESPACE},
                          "type": "secrets.vault-syncd.dev/vault-token",
                          "stringData": {"token": body["vault_token"]}})
        kube.admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultConnection",
                          "metadata": {"name": "default", "namespace": SYNCD_NAMESPACE},
                          "spec": {"address": body["vault_address"]}})
        kube.admin.apply({"apiVersion": GROUP_VERSION, "kind": "VaultAuth",
                          "metadata": {"name": "default", "namespace": SYNCD_NAMESPACE},
                          "spec": {"method": "token", "token": {"secretRef": {
                              "name": "vault-token", "key": "token"}}}})
        token = kube.admin.mint_token(SYNCD_NAMESPACE, "vault-syncd",
                                      expiration_seconds=24 * 3600)
        kubeconfig = kube.write_kubeconfig(directory / "syncd.kubeconfig", token=token)
        # The driver acts as syncd would for the limit scenario: same identity, same RBAC.
        return web.json_response({"kubeconfig": str(kubeconfig), "token": token})

    async def static_secrets(request: web.Request) -> web.Response:
        body = await request.json()
        templated = body.get("templates", 0)
        for index in range(body["start"], body["start"] + body["count"]):
            kube.admin.apply(static_secret(index, refresh=body["refresh"],
                                           template=index < templated,
                                           instant=bool(body.get("instant"))))
            if index % 50 == 0:
                await asyncio.sleep(0)  # let the server answer and stream meanwhile
        return web.json_response({"created": body["count"]})

    async def workload(request: web.Request) -> web.Response:
        kube.admin.apply(await request.json())
        return web.json_response({})

    async def requests(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            kube.requests.reset()
        return web.json_response(kube.requests.snapshot())

    async def users(request: web.Request) -> web.Response:
        return web.json_response(dict(kube.requests.users))

    async def faults(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            kube.faults.clear()
            return web.json_response({})
        body = await request.json()
        fault = kube.faults.add(body.pop("kind"), **body)
        return web.json_response({"kind": fault.kind})

    async def held(request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(h) for h in kube.faults.held()])

    async def restart(request: web.Request) -> web.Response:
        body = await request.json()
        await kube.restart_server(down=float(body.get("down", 0.0)))
        return web.json_response({"url": kube.url})

    async def watches(request: web.Request) -> web.Response:
        what = request.match_info["what"]
        count = kube.expire_watches() if what == "expire" else kube.cut_watches()
        return web.json_response({"watches": count})

    app = web.Application()
    app.router.add_get("/requests/users", users)
    app.router.add_post("/watches/{what:cut|expire}", watches)
    app.router.add_get("/faults/held", held)
    app.router.add_route("POST", "/faults", faults)
    app.router.add_route("DELETE", "/faults", faults)
    app.router.add_post("/restart", restart)
    app.router.add_post("/setup", setup)
    app.router.add_post("/static-secrets", static_secrets)
    app.router.add_post("/apply", workload)
    app.router.add_route("GET", "/requests", requests)
    app.router.add_route("DELETE", "/requests", requests)
    return app


async def _serve(directory: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # History back to any resourceVersion of the run, as etcd keeps it until compaction (5 min
    # by default): a watch that falls behind during a cold sync of 10,000 resumes, not relists.
    async with running_kube(pod_ready_delay=0.05, watch_window=200_000) as kube:
        runner = web.AppRunner(_app(kube, directory), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready = directory / "kube.json"
        ready.write_text(json.dumps({"url": kube.url, "control": f"http://127.0.0.1:{port}",
                                     "admin_kubeconfig": str(
                                         kube.write_kubeconfig(directory / "admin.kubeconfig"))}))
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    asyncio.run(_serve(parser.parse_args().dir))


if __name__ == "__main__":
    main()
