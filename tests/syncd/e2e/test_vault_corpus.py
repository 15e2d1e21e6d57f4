"""The Vault-answer corpus (``tests/corpus/vault``): every malformed or unusual KV answer gets
a clear condition naming the object and what is wrong, never the value, and leaves the Secret as
it was; or, for what Vault allows (nulls, numbers, nested objects), the data VSO would write.
A healthy object next to them keeps syncing."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.syncd.e2e.world import ROOT, World

CORPUS = ROOT / "tests" / "corpus" / "vault"


@dataclass(frozen=True)
class Case:
    name: str
    about: str
    status: int
    body: bytes
    spec: dict[str, Any]
    expect: dict[str, Any]
    #: Why syncd does not do what is expected yet (the case runs as a strict xfail).
    known_defect: str = ""

    @property
    def path(self) -> str:
        return f"kv-secret/corpus/{self.name}"


def _expand(value: Any, secret: str, token: str = "") -> Any:
    if isinstance(value, str):
        return value.replace("$secret", secret).replace("$token", token)
    if isinstance(value, list):
        return [_expand(v, secret, token) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$repeat"}:
            text, size = value["$repeat"]
            text = _expand(text, secret, token)
            return (text * (size // len(text) + 1))[:size]
        return {_expand(k, secret, token): _expand(v, secret, token)
                for k, v in value.items()}
    return value


def _load(path: Path, secret: str, token: str = "") -> Case:
    raw = json.loads(path.read_text())
    if "answer" in raw:
        body = json.dumps(_expand(raw["answer"], secret, token)).encode()
    elif "text" in raw:
        body = _expand(raw["text"], secret, token).encode()
    else:
        body = base64.b64decode(raw["base64"])
    return Case(name=path.stem, about=raw["about"], status=raw.get("status", 200), body=body,
                spec=raw.get("spec", {}), expect=_expand(raw["expect"], secret),
                known_defect=raw.get("known_defect", ""))


def test_every_case_says_what_it_expects() -> None:
    paths = sorted(CORPUS.glob("*.json"))
    assert len(paths) >= 20
    for path in paths:
        case = _load(path, "x")
        assert case.about and ({"reason", "says"} <= set(case.expect)
                               or {"synced"} & set(case.expect)
                               or {"synced_base64"} & set(case.expect)), path


def _cases(world: World, *, defects: bool) -> list[Case]:
    token = world.vault_token()  # the token syncd reads with: no message may hold it
    world.secret_values.add(token)
    cases = [_load(path, world.value(path.stem), token)
             for path in sorted(CORPUS.glob("*.json"))]
    return [case for case in cases if bool(case.known_defect) == defects]


async def test_vault_answers_of_the_corpus(world: World) -> None:
    await _run(world, _cases(world, defects=False))


@pytest.mark.xfail(strict=True, reason="the cases with a known_defect (see their files)")
async def test_known_defects_of_the_corpus(world: World) -> None:
    cases = _cases(world, defects=True)
    if not cases:
        pytest.skip("no case of the corpus has a known defect")
    await _run(world, cases)


def _text_data(world: World, name: str) -> dict[str, str]:
    """The Secret's data as text (a key holding bytes that are not UTF-8 shows them escaped:
    ``synced_base64`` checks those)."""
    secret = world.secret(name) or {}
    return {k: base64.b64decode(v).decode(errors="backslashreplace")
            for k, v in (secret.get("data") or {}).items()}


async def _run(world: World, cases: list[Case]) -> None:
    for case in cases:
        await world.write_kv(case.path, {"password": world.value(f"{case.name}-good"),
                                         "blob": "aGk="})
        world.vss(case.name, path=case.path, **case.spec)
    await world.write_kv("kv-secret/healthy", {"password": world.value("healthy")})
    world.vss("healthy", path="kv-secret/healthy")
    world.start_syncd()
    before = {}
    for case in cases:
        await world.synced(case.name, deadline=30)
        before[case.name] = world.secret(case.name)
    await world.synced("healthy")

    for case in cases:
        world.vault.admin.add_fault(method="GET", path=f"/v1/secret/data/{case.path}",
                                    status=case.status, body=case.body)

    failures = [c for c in cases if "reason" in c.expect]
    for case in failures:
        reason = case.expect["reason"]
        for kind in ("Synced", "Ready"):
            found = await world.wait_condition(case.name, kind, status="False", reason=reason,
                                               deadline=15)
            for words in case.expect["says"]:
                assert words in found["message"], (case.name, found)
            if reason != "InvalidSecretData":  # the read's own errors name the path
                assert case.path in found["message"], (case.name, found)
        await world.eventually(
            lambda c=case: world.events(c.expect["reason"], about=c.name, type="Warning"),
            message=f"{case.name}: a Warning Event")
    for case in cases:
        expected = case.expect.get("synced")
        if expected is not None:
            await world.eventually(
                lambda c=case, e=expected: all(
                    _text_data(world, c.name).get(k) == v for k, v in e.items()),
                message=f"{case.name}: {expected} (now {_text_data(world, case.name)})")
        expected = case.expect.get("synced_base64")
        if expected is not None:
            await world.eventually(
                lambda c=case, e=expected: all(
                    ((world.secret(c.name) or {}).get("data") or {}).get(k) == v
                    for k, v in e.items()),
                message=f"{case.name}: {expected} (now {world.secret(case.name)})")

    # The healthy object kept syncing beside them: a rotation reaches it.
    rotated = world.value("healthy-rotated")
    await world.write_kv("kv-secret/healthy", {"password": rotated})
    await world.eventually(
        lambda: (world.secret_data("healthy") or {}).get("password") == rotated,
        message="the healthy object rotated")
    # And the refused answers changed nothing: same Secret, same resourceVersion.
    for case in failures:
        after = world.secret(case.name)
        first = before[case.name]
        assert after is not None and first is not None, case.name
        assert after["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"], (
            f"{case.name}: the Secret was written")
        assert after["data"] == first["data"]
