"""A reference into a namespace syncd does not watch says so, rather than a bare "not found"."""

from types import SimpleNamespace
from typing import Any

from syncd.controller import _unwatched


def cache(*namespaces: str) -> Any:
    return SimpleNamespace(namespaces=namespaces)


def test_a_reference_outside_the_watched_namespaces_names_the_option() -> None:
    hint = _unwatched(cache("app", "vault-syncd"), "team-b")
    assert "namespace team-b is not watched" in hint
    assert "--watch-namespace app,vault-syncd" in hint


def test_no_hint_when_the_namespace_is_watched_or_all_are() -> None:
    assert _unwatched(cache("app", "vault-syncd"), "app") == ""
    assert _unwatched(cache(), "anything") == ""
