"""The file custodian: round trip, 0600 from creation, refusal of group/other-readable or foreign
files at config load and at read, and never overwriting shares it did not write."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from unsealer.custody import (
    CustodyConfigError,
    CustodyConflict,
    CustodyError,
    build_custodians,
    load_config,
)
from unsealer.custody.config import parse_config
from unsealer.custody.custodian import StoredCustodian
from unsealer.custody.file import FileBackend
from unsealer.shares import Share

MakeShares = Callable[..., list[Share]]


def _custodian(path: Path) -> StoredCustodian:
    return StoredCustodian(
        name="disk", kind="file", backend=FileBackend(custodian="disk", path=path)
    )


def _config(path: Path, **extra: Any) -> dict[str, Any]:
    return {"custodians": [{"name": "disk", "kind": "file", "path": str(path), **extra}]}


async def test_round_trip_creates_a_0600_file(
    tmp_path: Path, make_shares: MakeShares, logs: io.StringIO, assert_no_leak: Any
) -> None:
    path = tmp_path / "shares"
    shares = make_shares(5, 3)[:2]
    custodian = _custodian(path)
    await custodian.store(shares)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.geteuid()
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file left behind
    fetched = await custodian.fetch()
    assert fetched == shares
    assert [s.origin for s in fetched] == ["disk/line2", "disk/line3"]
    assert_no_leak(logs.getvalue() + repr(custodian) + custodian.describe(), shares)


async def test_store_is_idempotent_and_refuses_to_overwrite(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    custodian = _custodian(tmp_path / "shares")
    first, second = make_shares(5, 3)[:2], make_shares(5, 3)[:2]
    await custodian.store(first)
    await custodian.store(list(reversed(first)))  # the same set: a retried write
    with pytest.raises(CustodyConflict, match="refusing to overwrite"):
        await custodian.store(second)
    assert await custodian.fetch() == first
    await custodian.store(second, replace=True)
    assert await custodian.fetch() == second


async def test_hand_written_file_with_comments_and_hex(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    shares = make_shares(5, 3)[:2]
    path = tmp_path / "shares"
    path.write_text(f"# node b\n\n  {shares[0].hex()}  \n{shares[1].base64()}\n")
    path.chmod(0o600)
    assert await _custodian(path).fetch() == shares


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_config_refuses_a_readable_file_naming_it(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "shares"
    path.write_text("")
    path.chmod(mode)
    with pytest.raises(CustodyConfigError) as caught:
        parse_config(_config(path), source="custody.yaml", vault_namespace="vault")
    message = str(caught.value)
    assert str(path) in message and f"{mode:04o}" in message and "chmod 600" in message
    assert "custodian 'disk'" in message and "'path'" in message


def test_config_refuses_a_file_owned_by_someone_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shares"
    path.write_text("")
    path.chmod(0o600)
    owner = path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1000)  # as if we ran as another user
    with pytest.raises(CustodyConfigError, match=f"owned by uid {owner}") as caught:
        parse_config(_config(path), source="custody.yaml", vault_namespace="vault")
    assert str(path) in str(caught.value)


def test_config_refuses_a_readable_identity_file(tmp_path: Path) -> None:
    shares, identity = tmp_path / "shares", tmp_path / "age.key"
    shares.write_text("")
    shares.chmod(0o600)
    identity.write_text("")
    identity.chmod(0o644)
    with pytest.raises(CustodyConfigError, match=r"'identityFile'.*0644"):
        parse_config(
            _config(shares, identityFile=str(identity)), source="c", vault_namespace="vault"
        )


def test_missing_file_is_an_error_unless_initialising(tmp_path: Path) -> None:
    path = tmp_path / "later"
    with pytest.raises(CustodyConfigError, match="does not exist"):
        parse_config(_config(path), source="c", vault_namespace="vault")
    config = parse_config(_config(path), source="c", vault_namespace="vault", require_files=False)
    assert config.custodian("disk").name == "disk"


async def test_a_file_gone_after_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CustodyError, match="shares does not exist"):
        await _custodian(tmp_path / "shares").fetch()


async def test_a_file_made_readable_after_start_is_refused_at_read(
    tmp_path: Path, make_shares: MakeShares
) -> None:
    path = tmp_path / "shares"
    custodian = _custodian(path)
    await custodian.store(make_shares(5, 3)[:2])
    path.chmod(0o644)
    with pytest.raises(CustodyError, match="0644") as caught:
        await custodian.fetch()
    assert "custodian 'disk'" in str(caught.value)


async def test_load_config_from_yaml_and_build(tmp_path: Path, make_shares: MakeShares) -> None:
    shares = make_shares(5, 3)[:2]
    data = tmp_path / "shares"
    data.write_text("\n".join(s.base64() for s in shares))
    data.chmod(0o600)
    config_file = tmp_path / "custody.yaml"
    config_file.write_text(
        f"threshold: 3\nshares: 5\ncustodians:\n  - name: disk\n    kind: file\n"
        f"    path: {data}\n    shares: 2\n"
    )
    config = load_config(config_file, vault_namespace="vault")
    assert (config.threshold, config.shares) == (3, 5)
    custodians = build_custodians(config)
    assert await custodians["disk"].fetch() == shares
    assert custodians["disk"].describe() == f"file {data}"


async def test_garbage_in_the_file_names_the_line_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "shares"
    path.write_text("# a comment\nnot-a-share-at-all!\n")
    path.chmod(0o600)
    with pytest.raises(CustodyError, match=r"disk/line2\) is not valid hex or base64") as caught:
        await _custodian(path).fetch()
    assert "not-a-share-at-all" not in str(caught.value)
