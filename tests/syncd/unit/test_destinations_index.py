"""Which VaultStaticSecret writes which Secret: kept in both directions, so remembering it on
every reconcile costs the same at 10 objects as at 10,000 (it used to scan them all)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from syncd.controller import Controller


def _controller() -> Controller:
    unused = cast(Any, None)  # none of them is touched by the index
    caches = cast(Any, SimpleNamespace(static_secrets=None))  # read only for the default owners
    return Controller(caches=caches, clients=unused, pool=unused, recorder=unused,
                      status=unused, kube=unused, hmac_key=b"k" * 32, operator_namespace="ops",
                      templates=unused)


def _spec(name: str, secret: str) -> Any:
    return SimpleNamespace(namespace="app", name=name, destination=SimpleNamespace(name=secret))


def test_a_renamed_destination_moves_and_a_forgotten_owner_leaves() -> None:
    controller = _controller()
    controller._remember_destination(_spec("web", "web-v1"))
    controller._remember_destination(_spec("web", "web-v1"))  # every refresh: no change
    assert controller.destinations == {("app", "web-v1"): ("app", "web")}
    controller._remember_destination(_spec("web", "web-v2"))  # spec.destination.name edited
    assert controller.destinations == {("app", "web-v2"): ("app", "web")}
    controller._forget_destination(("app", "web"))  # the VaultStaticSecret is gone
    assert controller.destinations == {}


def test_a_secret_taken_over_stays_with_its_new_writer() -> None:
    controller = _controller()
    controller._remember_destination(_spec("old", "shared"))
    controller._remember_destination(_spec("new", "shared"))
    controller._forget_destination(("app", "old"))  # the old writer goes: not the Secret's entry
    assert controller.destinations == {("app", "shared"): ("app", "new")}
    controller._remember_destination(_spec("old", "own"))  # and it can point elsewhere later
    assert controller.destinations == {("app", "shared"): ("app", "new"),
                                       ("app", "own"): ("app", "old")}
