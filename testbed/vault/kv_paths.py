"""LIST semantics shared by both KV engines: immediate children, folders with a trailing slash."""

from __future__ import annotations

from collections.abc import Iterable


def list_children(paths: Iterable[str], prefix: str) -> list[str]:
    """The sorted names directly under ``prefix`` (sub-folders end in ``/``)."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    children: set[str] = set()
    for path in paths:
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        head, slash, _ = rest.partition("/")
        if head:
            children.add(head + slash)
    return sorted(children)
