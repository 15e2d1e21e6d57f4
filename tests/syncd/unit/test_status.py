"""Condition messages (syncd/status.py): kept whole up to metav1.Condition's bound, which is
what our CRDs' schemas enforce, and cut to it, saying so, beyond."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncd.status import MAX_MESSAGE, fit_message, set_condition

CRDS = Path(__file__).resolve().parents[3] / "manifests" / "crds"


def _condition(message: str) -> dict[str, object]:
    (entry,) = set_condition([], type="Ready", status="False", reason="InvalidSpec",
                             message=message, generation=1)
    return entry


def test_a_long_message_is_kept_whole() -> None:
    message = "spec.destination.transformation: " + "x" * 5000
    assert _condition(message)["message"] == message


def test_a_message_over_the_bound_is_cut_to_it_and_says_so() -> None:
    message = "y" * (MAX_MESSAGE + 10)
    cut = _condition(message)["message"]
    assert isinstance(cut, str) and len(cut) == MAX_MESSAGE
    assert cut.startswith("y" * 1000)
    assert cut.endswith(f"({MAX_MESSAGE + 10:,} characters; the Event has the whole message)")
    assert fit_message("z" * MAX_MESSAGE) == "z" * MAX_MESSAGE


@pytest.mark.parametrize("crd", sorted(CRDS.glob("*.yaml")), ids=lambda p: p.stem)
def test_the_bound_is_the_schemas(crd: Path) -> None:
    """A longer message would make the API server refuse the whole status patch."""
    text = crd.read_text()
    if "conditions:" not in text:
        pytest.skip("no conditions")
    bounds = set()

    def visit(node: object) -> None:
        if isinstance(node, dict):
            conditions = (node.get("properties") or {}).get("conditions")
            if isinstance(conditions, dict):
                message = conditions["items"]["properties"]["message"]
                bounds.add(message.get("maxLength"))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for document in yaml.safe_load_all(text):
        visit(document)
    assert bounds == {MAX_MESSAGE}
