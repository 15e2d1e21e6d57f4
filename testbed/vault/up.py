"""The Vault part of ``python -m testbed up``: command-line options and the serving context.

``serve`` starts the emulation and writes ``DIR/vault.env`` (``VAULT_ADDR`` for vault-0,
``VAULT_ADDRS`` for every node, ``VAULT_CACERT`` with ``--vault-tls``, ``VAULT_TOKEN`` with
``--vault-bootstrap``) so the demo and out-of-process benchmarks find it; the file is removed
again on exit so nobody reads a stale address.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from testbed.vault.cluster import RunningVault, running_vault

ENV_FILE = "vault.env"
INIT_FILE = "vault-init.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Vault emulation")
    group.add_argument("--vault-nodes", type=int, default=1, help="instances sharing one storage")
    group.add_argument(
        "--vault-hosts",
        default="",
        help="comma-separated bind address per node, e.g. 127.0.0.2,127.0.0.3 (default 127.0.0.1)",
    )
    group.add_argument("--vault-port", type=int, default=0, help="listen port (0: any free port)")
    group.add_argument(
        "--vault-tls", action="store_true", help="serve https; CA in DIR/vault-ca.pem"
    )
    group.add_argument(
        "--vault-namespace", default="vault",
        help="namespace in node certificates' pod names (and of --vault-statefulset)",
    )
    group.add_argument(
        "--vault-service", default="vault-internal",
        help="governing Service in node certificates' pod names: node i's certificate is for "
        "vault-i.SERVICE.NAMESPACE.svc (and its shorter forms) and no other pod",
    )
    group.add_argument("--vault-state", type=Path, default=None, help="keep storage in this dir")
    group.add_argument(
        "--vault-wrong-key-status",
        type=int,
        choices=(400, 500),
        default=400,
        help="status of a failed unseal (400: Vault >= 1.13; 500: Vault 1.3-1.12)",
    )
    group.add_argument(
        "--vault-bootstrap",
        action="store_true",
        help="initialise, unseal and mount kv-v2 at secret/; keys and root token in DIR/"
        + INIT_FILE,
    )
    group.add_argument("--vault-shares", type=int, default=1, help="shares for --vault-bootstrap")
    group.add_argument(
        "--vault-threshold", type=int, default=1, help="threshold for --vault-bootstrap"
    )


def _bootstrap(vault: RunningVault, args: argparse.Namespace, directory: Path) -> str:
    """Initialise (or, on a kept state, unseal with the saved keys); return the root token."""
    path = directory / INIT_FILE
    if not vault.core.initialized:
        result = vault.admin.bootstrap(shares=args.vault_shares, threshold=args.vault_threshold)
        path.write_text(
            json.dumps(
                {
                    "keys": result.keys_hex,
                    "keys_base64": result.keys_base64,
                    "root_token": result.root_token,
                },
                indent=2,
            )
        )
        path.chmod(0o600)
        return result.root_token
    saved = json.loads(path.read_text())
    vault.admin.unseal([bytes.fromhex(k) for k in saved["keys"]])
    return str(saved["root_token"])


@contextlib.asynccontextmanager
async def serve(args: argparse.Namespace, directory: Path) -> AsyncIterator[RunningVault]:
    nodes: int = args.vault_nodes
    hosts = [h.strip() for h in args.vault_hosts.split(",") if h.strip()] or None
    if hosts is not None and len(hosts) == 1 and nodes > 1:
        hosts = hosts * nodes
    async with running_vault(
        nodes=nodes,
        hosts=hosts,
        port=args.vault_port,
        tls=args.vault_tls,
        tls_dir=directory,
        state_dir=args.vault_state,
        wrong_key_status=args.vault_wrong_key_status,
        tls_namespace=args.vault_namespace,
        tls_service=args.vault_service,
    ) as vault:
        lines = [f"VAULT_ADDR={vault.address}", f"VAULT_ADDRS={','.join(vault.addresses)}"]
        if vault.ca_file is not None:
            lines.append(f"VAULT_CACERT={vault.ca_file}")
        if args.vault_bootstrap:
            lines.append(f"VAULT_TOKEN={_bootstrap(vault, args, directory)}")
        env_file = directory / ENV_FILE
        temporary = env_file.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, env_file)  # readers never see a half-written file
        try:
            yield vault
        finally:
            env_file.unlink(missing_ok=True)
