"""The key of the data fingerprints, kept in a Secret in syncd's own namespace.

Fingerprints (``status.secretMAC``, the workloads' fingerprint annotation) are keyed HMACs, not
plain hashes: a plain hash of a low-entropy secret ("hunter2") can be guessed offline by anyone
who can read a status. The key must survive restarts — otherwise every fingerprint would
change and every workload would restart — so it lives in a Secret, created on first start.
"""

from __future__ import annotations

import base64

from plumbing.kube import SECRETS, Kube, KubeError
from syncd.fingerprint import MIN_KEY_BYTES, new_key

SECRET_NAME = "vault-syncd-hmac-key"
DATA_KEY = "key"


async def load_or_create(kube: Kube, *, namespace: str) -> bytes:
    """The fingerprint key; created if missing. Two replicas racing agree on one key."""
    item = SECRETS.path(namespace=namespace, name=SECRET_NAME)
    try:
        secret = await kube.request("GET", item)
    except KubeError as exc:
        if not exc.not_found:
            raise
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET_NAME,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/part-of": "vault-syncd"},
            },
            "type": "Opaque",
            "immutable": True,
            "data": {DATA_KEY: base64.b64encode(new_key()).decode()},
        }
        try:
            secret = await kube.request("POST", SECRETS.path(namespace=namespace), body=body)
        except KubeError as race:
            if not race.conflict:
                raise
            secret = await kube.request("GET", item)  # another replica created it first
    key = base64.b64decode((secret.get("data") or {}).get(DATA_KEY) or "")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"Secret {namespace}/{SECRET_NAME}: data.{DATA_KEY} is shorter than"
            f" {MIN_KEY_BYTES} bytes;"
            " delete the Secret to have a new key made (every workload will restart once)"
        )
    return key
