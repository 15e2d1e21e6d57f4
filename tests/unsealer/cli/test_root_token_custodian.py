"""The root token at a designated custodian (``--root-token-custodian``), never lost, never
mixed with shares, never shown."""

from __future__ import annotations

import base64
import stat
from typing import Any

import yaml

#: The root token's custodian, in a place that holds no shares (namespace vault-root).
TOKEN = {"name": "token", "kind": "kubernetesSecret", "namespace": "vault-root",
         "secretName": "root-token", "rootTokenKey": "root-token", "shares": 0}
#: A root token file on a disk of its own (a declared place: files on this node hold shares).
def _token_disk(path: Any) -> dict[str, Any]:
    return {"name": "token-disk", "kind": "file", "path": str(path.parent / "unused"),
            "rootTokenFile": str(path), "shares": 0, "place": "usb-key"}


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
    config = world.custody_config(more=[TOKEN])

    run = await world.cli(*_init_args(world, config, "--root-token-custodian", "token"))

    held = world.held_everywhere()
    world.register_shares(share for shares in held.values() for share in shares)
    token = world.held_root_token("token")
    assert token is not None
    world.root_tokens.add(token)
    assert run.rc == 0, run
    assert run.out.splitlines()[1] == (
        "Root token stored at custodian 'token' (Secret vault-root/root-token key "
        "'root-token')")
    # The token's Secret holds the token only, in a namespace that holds no share.
    secret = world.kube.admin.get("v1", "Secret", "root-token", "vault-root")
    assert sorted(secret["data"]) == ["root-token"]
    assert "root-token" not in world.kube.admin.get("v1", "Secret", "unseal-a",
                                                    "vault-custody")["data"]
    assert {name: len(shares) for name, shares in held.items()} == {
        "kube-a": 2, "kube-b": 2, "disk": 2}
    assert not list(world.workdir.glob("unsealer-*"))  # no fallback, no rescue file
    assert await _token_works(world, token)

    # verify says that the custodian holds it, never what it is; kube-b cannot hold one.
    verify = await world.cli("custody", "verify", "--custody-config", str(config),
                             *world.pod_args())
    lines = verify.out.splitlines()
    start = lines.index("Root token:")
    assert lines[start + 1].split()[:2] == ["token", "yes"]
    assert not any(line.split()[:1] == ["kube-b"] for line in lines[start + 1:start + 3])


async def test_root_token_destinations_are_refused_before_sys_init(world: Any) -> None:
    config = world.custody_config(more=[
        TOKEN, _token_disk(world.directory / "custody" / "root-token")])
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
        ("--root-token-custodian", "token", "--print-root-token"):
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
        "metadata": {"name": "root-token", "namespace": "vault-root"},
        "data": {"root-token": base64.b64encode(old.encode()).decode()},
    })
    occupied = await world.cli(*_init_args(world, config, "--root-token-custodian", "token"))
    assert occupied.rc == 2
    assert occupied.error_line() == (
        "unsealer init: error: custodian 'token' already holds a root token (Secret "
        "vault-root/root-token key 'root-token'; of another Vault?). Clear it or pass "
        "--replace to overwrite. Vault was not initialised")

    assert (await world.seal_status())["initialized"] is False
    assert not token_file.exists()
    assert world.held_root_token("token") == old


async def test_a_failing_token_custodian_falls_back_to_the_token_file(world: Any) -> None:
    # The root token file's directory does not exist: every write fails, after sys/init.
    target = world.directory / "missing" / "root-token"
    config = world.custody_config(more=[_token_disk(target)])
    token_file = world.directory / "root-token"

    run = await world.cli(*_init_args(world, config, "--root-token-custodian", "token-disk",
                                      "--root-token-file", str(token_file)))

    world.register_shares(s for shares in world.held_everywhere().values() for s in shares)
    token = token_file.read_text().strip()
    world.root_tokens.add(token)
    assert run.rc == 1, run
    assert run.error_line() == (
        "unsealer init: error: every share is at its custodians, but the root token could not "
        f"be stored at custodian 'token-disk' (custodian 'token-disk': cannot write {target}: "
        "No such file "
        f"or directory); it was written to {token_file} (mode 0600) instead")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "Stored 5 unseal key(s), threshold 3:" in run.out
    assert await _token_works(world, token)


async def test_a_failing_token_custodian_rescues_the_token_and_import_stores_it_later(
    world: Any,
) -> None:
    target = world.directory / "later" / "root-token"
    config = world.custody_config(more=[_token_disk(target)])

    run = await world.cli(*_init_args(world, config, "--root-token-custodian", "token-disk"))

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
    assert lines[lines.index("Root token:") + 1].split() == [
        "token-disk", "no", "file", str(target)]

    # The rescue file goes back to it, twice (idempotent).
    for held in ("stored", "already held"):
        restored = await world.cli("custody", "import", "--custody-config", str(config),
                                   "--kubeconfig", str(world.kubeconfig),
                                   "--fallback-file", str(rescue))
        assert restored.rc == 0, restored
        assert f"  token-disk: root token: {held} (file {target})" in restored.out.splitlines()
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
    config = world.custody_config(more=[TOKEN])
    paste = init_text(body["keys_base64"], body["root_token"], 3).encode()

    first = await world.cli("custody", "import", "--custody-config", str(config),
                            "--kubeconfig", str(world.kubeconfig),
                            "--root-token-custodian", "token", stdin=paste)
    again = await world.cli("custody", "import", "--custody-config", str(config),
                            "--kubeconfig", str(world.kubeconfig),
                            "--root-token-custodian", "token", stdin=paste)

    assert first.rc == 0, first
    assert first.out.splitlines()[0] == (
        "Root token stored at custodian 'token' (Secret vault-root/root-token key "
        "'root-token')")
    assert again.rc == 0, again  # a retry: the same shares and token, already held
    assert again.out.splitlines()[0].endswith("(it already held it)")
    assert world.held_root_token("token") == body["root_token"]
    assert len(world.held("kube-a")) == 2
