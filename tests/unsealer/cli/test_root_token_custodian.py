"""The root token at a designated custodian (``--root-token-custodian``), never lost, never
mixed with shares, never shown."""

from __future__ import annotations

import base64
import stat
from typing import Any

import yaml

ROOT_KEY = {"kube-a": {"rootTokenKey": "root-token"}}


def _init_args(world: Any, config: Any, *extra: str) -> list[str]:
    return ["init", "--custody-config", str(config), *world.pod_args(), *extra]


async def _token_works(world: Any, token: str) -> bool:
    """Unseal vault-0 from what the custodians hold, then ask Vault who ``token`` is."""
    held = world.held_everywhere()
    distinct = list(dict.fromkeys(share for shares in held.values() for share in shares))
    assert (await world.unseal(distinct, node=0))["sealed"] is False
    status, body = await world.vault_call("GET", "auth/token/lookup-self", token=token)
    return status == 200 and body["data"]["policies"] == ["root"]


def _one_file(world: Any, pattern: str) -> Any:
    found = list(world.workdir.glob(pattern))
    assert len(found) == 1, found
    return found[0]


async def test_init_stores_the_root_token_at_its_custodian_apart_from_the_shares(
    world: Any,
) -> None:
    config = world.custody_config(extra=ROOT_KEY)

    run = await world.cli(*_init_args(world, config, "--root-token-custodian", "kube-a"))

    held = world.held_everywhere()
    world.register_shares(share for shares in held.values() for share in shares)
    token = world.held_root_token("kube-a")
    assert token is not None
    world.root_tokens.add(token)
    assert run.rc == 0, run
    assert run.out.splitlines()[1] == (
        "Root token stored at custodian 'kube-a' (Secret vault-custody/unseal-a key "
        "'root-token')")
    # The Secret holds its two shares under share-N and the token under its own key only.
    secret = world.kube.admin.get("v1", "Secret", "unseal-a", "vault-custody")
    assert sorted(secret["data"]) == ["root-token", "share-1", "share-2"]
    assert {name: len(shares) for name, shares in held.items()} == {
        "kube-a": 2, "kube-b": 2, "disk": 2}
    assert not list(world.workdir.glob("unsealer-*"))  # no fallback, no rescue file
    assert await _token_works(world, token)

    # verify says that the custodian holds it, never what it is; kube-b cannot hold one.
    verify = await world.cli("custody", "verify", "--custody-config", str(config),
                             *world.pod_args())
    lines = verify.out.splitlines()
    start = lines.index("Root token:")
    assert lines[start + 1].split()[:2] == ["kube-a", "yes"]
    assert not any(line.split()[:1] == ["kube-b"] for line in lines[start + 1:start + 3])


async def test_root_token_destinations_are_refused_before_sys_init(world: Any) -> None:
    config = world.custody_config(extra={**ROOT_KEY, "disk": {
        "rootTokenFile": str(world.directory / "custody" / "root-token")}})
    with_env = world.directory / "with-env.yaml"
    document = yaml.safe_load(config.read_text())
    document["custodians"].append({"name": "dev", "kind": "env", "variable": "DEV_SHARES"})
    with_env.write_text(yaml.safe_dump(document))
    token_file = world.directory / "root-token"

    cases = {
        ("--root-token-custodian", "kube-b"):
            "--root-token-custodian kube-b: custodian 'kube-b' has no 'rootTokenKey' in the "
            "custody config (add e.g. rootTokenKey: root-token), so it cannot hold the root "
            "token",
        ("--root-token-custodian", "nobody"):
            f"--root-token-custodian nobody: the custody config {config} has no custodian of "
            "that name",
        ("--root-token-custodian", "kube-a", "--print-root-token"):
            "--root-token-custodian and --print-root-token exclude each other: choose one "
            "destination for the root token",
        ("--root-token-file", str(token_file), "--print-root-token"):
            "--root-token-file and --print-root-token exclude each other: choose one "
            "destination for the root token",
    }
    for extra, message in cases.items():
        run = await world.cli(*_init_args(world, config, *extra))
        assert run.rc == 2, run
        assert run.error_line() == f"unsealer init: error: {message}"

    env = await world.cli(*_init_args(world, with_env, "--root-token-custodian", "dev"))
    assert env.rc == 2
    assert env.error_line() == (
        "unsealer init: error: --root-token-custodian dev: custodian 'dev' cannot hold the "
        "root token: a env custodian is read-only to the unsealer (use a kubernetesSecret "
        "custodian with rootTokenKey or a file custodian with rootTokenFile)")

    # A custodian that already holds a root token (another Vault's) is refused too.
    old = "hvs.AnOldRootTokenOfAnotherVault"
    world.root_tokens.add(old)
    world.kube.admin.apply({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "unseal-a", "namespace": "vault-custody"},
        "data": {"root-token": base64.b64encode(old.encode()).decode()},
    })
    occupied = await world.cli(*_init_args(world, config, "--root-token-custodian", "kube-a"))
    assert occupied.rc == 2
    assert occupied.error_line() == (
        "unsealer init: error: custodian 'kube-a' already holds a root token (Secret "
        "vault-custody/unseal-a key 'root-token'; of another Vault?). Clear it or pass "
        "--replace to overwrite. Vault was not initialised")

    assert (await world.seal_status())["initialized"] is False
    assert not token_file.exists()
    assert world.held_root_token("kube-a") == old


async def test_a_failing_token_custodian_falls_back_to_the_token_file(world: Any) -> None:
    # The root token file's directory does not exist: every write fails, after sys/init.
    target = world.directory / "missing" / "root-token"
    config = world.custody_config(extra={"disk": {"rootTokenFile": str(target)}})
    token_file = world.directory / "root-token"

    run = await world.cli(*_init_args(world, config, "--root-token-custodian", "disk",
                                      "--root-token-file", str(token_file)))

    world.register_shares(s for shares in world.held_everywhere().values() for s in shares)
    token = token_file.read_text().strip()
    world.root_tokens.add(token)
    assert run.rc == 1, run
    assert run.error_line() == (
        "unsealer init: error: every share is at its custodians, but the root token could not "
        f"be stored at custodian 'disk' (custodian 'disk': cannot write {target}: No such file "
        f"or directory); it was written to {token_file} (mode 0600) instead")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "Stored 5 unseal key(s), threshold 3:" in run.out
    assert await _token_works(world, token)


async def test_a_failing_token_custodian_rescues_the_token_and_import_stores_it_later(
    world: Any,
) -> None:
    target = world.directory / "later" / "root-token"
    config = world.custody_config(extra={"disk": {"rootTokenFile": str(target)}})

    run = await world.cli(*_init_args(world, config, "--root-token-custodian", "disk"))

    world.register_shares(s for shares in world.held_everywhere().values() for s in shares)
    rescue = _one_file(world, "unsealer-root-token-*.txt")
    assert stat.S_IMODE(rescue.stat().st_mode) == 0o600
    token = rescue.read_text().strip().splitlines()[-1]
    world.root_tokens.add(token)
    assert run.rc == 1, run
    line = run.error_line()
    assert f"the root token was written to {rescue} (mode 0600)" in line
    assert "unsealer custody import --fallback-file" in line

    # The custodian is fixed; verify says it holds no root token yet.
    target.parent.mkdir(mode=0o700)
    verify = await world.cli("custody", "verify", "--custody-config", str(config),
                             *world.pod_args())
    lines = verify.out.splitlines()
    assert lines[lines.index("Root token:") + 1].split() == ["disk", "no", "file", str(target)]

    # The rescue file goes back to it, twice (idempotent).
    for held in ("stored", "already held"):
        restored = await world.cli("custody", "import", "--custody-config", str(config),
                                   "--kubeconfig", str(world.kubeconfig),
                                   "--fallback-file", str(rescue))
        assert restored.rc == 0, restored
        assert f"  disk: root token: {held} (file {target})" in restored.out.splitlines()
        assert f"Delete the file now (shred -u {rescue})" in restored.out
    assert target.read_text() == f"{token}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert await _token_works(world, token)


async def test_import_stores_the_root_token_at_its_custodian_idempotently(
    world: Any, init_text: Any,
) -> None:
    status, body = await world.vault_call(
        "PUT", "sys/init", body={"secret_shares": 5, "secret_threshold": 3})
    assert status == 200
    world.register_shares(base64.b64decode(key) for key in body["keys_base64"])
    world.root_tokens.add(body["root_token"])
    config = world.custody_config(extra=ROOT_KEY)
    paste = init_text(body["keys_base64"], body["root_token"], 3).encode()

    first = await world.cli("custody", "import", "--custody-config", str(config),
                            "--kubeconfig", str(world.kubeconfig),
                            "--root-token-custodian", "kube-a", stdin=paste)
    again = await world.cli("custody", "import", "--custody-config", str(config),
                            "--kubeconfig", str(world.kubeconfig),
                            "--root-token-custodian", "kube-a", stdin=paste)

    assert first.rc == 0, first
    assert first.out.splitlines()[0] == (
        "Root token stored at custodian 'kube-a' (Secret vault-custody/unseal-a key "
        "'root-token')")
    assert again.rc == 0, again  # a retry: the same shares and token, already held
    assert again.out.splitlines()[0].endswith("(it already held it)")
    assert world.held_root_token("kube-a") == body["root_token"]
    assert len(world.held("kube-a")) == 2
