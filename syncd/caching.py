"""What syncd keeps of each object it caches: the object less what it never reads.

At 10,000 VaultStaticSecrets and their 10,000 Secrets the watch caches are most of syncd's
memory, and most of a cached object is bookkeeping of the API server's that syncd never looks
at: ``metadata.managedFields`` is half of a VaultStaticSecret with a status. It is dropped
on insert (controller-runtime's cache transforms do the same). Dropping it is safe for the
Secrets syncd writes back with a PUT built from the cached copy: an update that carries no
``managedFields`` leaves the server's untouched.

The rest is kept whole (labels, annotations, status: syncd reads or writes them back), but
with the mapping keys interned: every object repeats the same few dozen keys ("metadata",
"resourceVersion", "lastTransitionTime"...), and ``json.loads`` makes each of them a fresh
string per object.
"""

from __future__ import annotations

import sys
from typing import Any

from plumbing.kube import JSON


def slim(obj: JSON) -> JSON:
    """``obj`` as the caches keep it (a new object; ``obj`` is left as it was)."""
    kept: JSON = _interned(obj)
    metadata = kept.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return kept


def _interned(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _interned(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value
