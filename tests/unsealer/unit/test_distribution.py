"""Distribution at init/import: a safe plan, retries, and a 0600 fallback file so that a failing
custodian never loses a share."""

from __future__ import annotations

import io
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from unsealer.custody import (
    Custodian,
    CustodyError,
    DistributionError,
    build_custodians,
    distribute,
)
from unsealer.custody.config import parse_config
from unsealer.custody.custodian import StoredCustodian
from unsealer.custody.distribution import plan
from unsealer.custody.file import FileBackend
from unsealer.shares import Share

MakeShares = Callable[..., list[Share]]


class Failing:
    """A custodian whose first ``failures`` stores fail (``None``: all of them)."""

    def __init__(self, name: str, failures: int | None = None) -> None:
        self.name = name
        self.failures = failures
        self.calls = 0
        self.stored: list[Share] = []

    async def fetch(self, *, pod: str | None = None) -> list[Share]:
        return list(self.stored)

    async def store(self, shares: Sequence[Share], *, replace: bool = False) -> None:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise CustodyError("the API server timed out", custodian=self.name)
        self.stored = list(shares)

    def describe(self) -> str:
        return "a test custodian"


def _config(tmp_path: Path, *capacities: int, threshold: int = 3) -> Any:
    return parse_config(
        {
            "threshold": threshold,
            "custodians": [
                # Files on one node are one place: each declares its own (disks apart).
                {"name": name, "kind": "file", "path": str(tmp_path / name), "shares": count,
                 "place": f"disk-{name}"}
                for name, count in zip("abcdef", capacities, strict=False)
            ],
        },
        source="c", vault_namespace="vault", require_files=False,
    )


async def _file_shares(path: Path) -> list[Share]:
    custodian = StoredCustodian(
        name="fallback", kind="file", backend=FileBackend(custodian="fallback", path=path)
    )
    return await custodian.fetch()


def test_plan_is_ab_ca_bc(tmp_path: Path) -> None:
    placement = plan(3, threshold=3, config=_config(tmp_path, 2, 2, 2))
    assert placement == {"a": [0, 1], "b": [2, 0], "c": [1, 2]}


def test_plan_refuses_what_cannot_be_safe(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alone yields 3"):
        plan(5, threshold=3, config=_config(tmp_path, 3, 2))
    with pytest.raises(ValueError, match="hold 3 shares in all, fewer than the 5"):
        plan(5, threshold=3, config=_config(tmp_path, 2, 1))
    assert plan(5, threshold=3, config=_config(tmp_path, 3, 2), allow_unsafe=True)


async def test_distributes_and_every_custodian_gets_its_shares(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    shares = make_shares(3, 3)
    config = _config(tmp_path, 2, 2, 2)
    custodians = build_custodians(config)
    result = await distribute(
        shares, threshold=3, config=config, custodians=custodians, fallback_dir=tmp_path
    )
    assert result.placement == {"a": (1, 2), "b": (3, 1), "c": (2, 3)}
    assert await custodians["b"].fetch() == [shares[2], shares[0]]
    assert not list(tmp_path.glob("unsealer-undelivered-*"))
    assert all(not share.wiped for share in shares)  # the caller's to wipe
    assert_no_leak(logs.getvalue(), shares)


async def test_a_failing_custodian_loses_nothing(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    shares = make_shares(3, 3)
    config = _config(tmp_path, 2, 2, 2)
    custodians: dict[str, Custodian] = dict(build_custodians(config))
    broken = Failing("b")
    custodians["b"] = broken
    fallback_dir = tmp_path / "fallback"
    fallback_dir.mkdir()

    with pytest.raises(DistributionError) as caught:
        await distribute(
            shares, threshold=3, config=config, custodians=custodians,
            fallback_dir=fallback_dir, attempts=3, retry_delay=0,
        )
    error = caught.value
    assert broken.calls == 3  # bounded retries
    assert error.fallback is not None and error.fallback.parent == fallback_dir
    message = str(error)
    assert str(error.fallback) in message and "custodians b could not store" in message
    assert "Stored as planned: a, c" in message
    assert stat.S_IMODE(error.fallback.stat().st_mode) == 0o600
    # The fallback holds exactly b's shares (3 and 1), in the file custodian's format...
    assert await _file_shares(error.fallback) == [shares[2], shares[0]]
    text = error.fallback.read_text()
    assert "# for b (a test custodian): unseal key 3" in text
    # ...and a and c stored theirs: every share is somewhere.
    assert await custodians["a"].fetch() == [shares[0], shares[1]]
    assert await custodians["c"].fetch() == [shares[1], shares[2]]
    assert_no_leak(logs.getvalue() + message + repr(error), shares)


async def test_a_flaky_custodian_is_retried_until_it_stores(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    shares = make_shares(3, 3)
    config = _config(tmp_path, 2, 2, 2)
    custodians: dict[str, Custodian] = dict(build_custodians(config))
    flaky = Failing("c", failures=2)
    custodians["c"] = flaky
    await distribute(
        shares, threshold=3, config=config, custodians=custodians, fallback_dir=tmp_path,
        attempts=3, retry_delay=0,
    )
    assert flaky.calls == 3 and flaky.stored == [shares[1], shares[2]]


async def test_no_safe_plan_writes_everything_to_the_fallback(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    shares = make_shares(5, 3)
    config = _config(tmp_path, 3, 2)
    with pytest.raises(DistributionError, match="no safe way to place 5 shares") as caught:
        await distribute(
            shares, threshold=3, config=config, custodians=build_custodians(config),
            fallback_dir=tmp_path,
        )
    assert caught.value.fallback is not None
    assert await _file_shares(caught.value.fallback) == shares
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


async def test_conflicts_are_not_retried_or_overwritten(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    old, shares = make_shares(3, 3), make_shares(3, 3)
    config = _config(tmp_path, 2, 2, 2)
    custodians = build_custodians(config)
    await custodians["a"].store(old[:2])
    with pytest.raises(DistributionError, match="refusing to overwrite") as caught:
        await distribute(
            shares, threshold=3, config=config, custodians=custodians, fallback_dir=tmp_path,
            retry_delay=0,
        )
    assert await custodians["a"].fetch() == old[:2]
    assert caught.value.fallback is not None
    assert await _file_shares(caught.value.fallback) == shares[:2]


async def test_unwritable_fallback_says_the_shares_are_only_in_memory(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    shares = make_shares(3, 3)
    config = _config(tmp_path, 2, 2, 2)
    custodians: dict[str, Custodian] = dict(build_custodians(config))
    custodians["a"] = Failing("a")
    with pytest.raises(DistributionError, match="only in memory") as caught:
        await distribute(
            shares, threshold=3, config=config, custodians=custodians,
            fallback_dir=tmp_path / "missing", attempts=1,
        )
    assert caught.value.fallback is None
    assert all(not share.wiped for share in shares)
