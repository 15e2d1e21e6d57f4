"""What syncd keeps of each object it caches: the object less what it never reads.

At 10,000 VaultStaticSecrets and their 10,000 Secrets the watch caches are most of syncd's
memory, and most of a cached object is bookkeeping of the API server's that syncd never looks
at: ``metadata.managedFields`` is half of a VaultStaticSecret with a status. It is dropped
on insert (controller-runtime's cache transforms do the same). Dropping it is safe for the
Secrets syncd writes back with a PUT built from the cached copy: an update that carries no
``managedFields`` leaves the server's untouched.

The rest is kept whole (labels, annotations, status: syncd reads or writes them back), but
with its strings interned: every object repeats the same few dozen keys ("metadata",
"resourceVersion", "lastTransitionTime"...) and many values (the apiVersion, the kind, the
namespace, condition reasons, a message in both the Synced and the Ready condition, the
timestamps of one busy second), and ``json.loads`` makes each a fresh string per object. Short
strings only: long ones are rarely shared. Interned strings are freed with their last user.
Measured at 10,000 objects: 184 MiB of cached VaultStaticSecrets and Secrets as decoded, 56 MiB
without managedFields and with interned keys, 37 MiB with short values interned too.
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


#: Strings up to this length are interned (a uid is 36, a fingerprint 64).
SHORT = 64


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= SHORT else value
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _interned(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value
