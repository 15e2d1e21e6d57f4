"""Adding and removing syncd's finalizer on one of its objects.

A finalizer keeps an object until syncd has undone what it holds outside Kubernetes (a lease,
a certificate). It is added only when there is something to undo (``revoke: true``), so that an
object is never stuck for nothing when syncd is not running.
"""

from __future__ import annotations

from plumbing.kube import JSON, JSON_PATCH, Kube, KubeError, Resource


async def keep_finalizer(
    kube: Kube, obj: JSON, *, resource: Resource, finalizer: str, wanted: bool
) -> None:
    """Make ``finalizer`` present on ``obj`` or not, as ``wanted``; nothing if it already is."""
    metadata = obj["metadata"]
    finalizers = list(metadata.get("finalizers") or [])
    if (finalizer in finalizers) == wanted:
        return
    changed = [*finalizers, finalizer] if wanted else [f for f in finalizers if f != finalizer]
    # The test keeps a concurrent change of the list (another controller's) from being lost.
    patch = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers}
             if "finalizers" in metadata else
             {"op": "add", "path": "/metadata/finalizers", "value": []},
             {"op": "replace", "path": "/metadata/finalizers", "value": changed}]
    try:
        await kube.request(
            "PATCH", resource.path(namespace=metadata["namespace"], name=metadata["name"]),
            body=patch, content_type=JSON_PATCH, query=[("fieldManager", "vault-syncd")])
    except KubeError as exc:
        if exc.status == 404 and not wanted:
            return  # gone already
        raise
