"""The custody config file: which custodians exist, where, and what they hold.

Custody is safety configuration: a typo must stop the unsealer at start, with one message that
names the custodian and the field, rather than show up the night the cluster loses power. So
unknown fields are errors, a Secret in Vault's own namespace is an error, and a share file that
is not ``0600`` and ours is an error.

Format (YAML, or JSON, which is YAML)::

    threshold: 3        # optional: Vault's key threshold, for the invariant before Vault answers
    shares: 5           # optional: how many shares Vault made
    custodians:         # one entry per custodian; names are DNS labels, unique
      - name: kube-a
        kind: kubernetesSecret
        namespace: vault-custody    # must not be Vault's namespace
        secretName: unseal-a
        keyPrefix: share-           # optional (default share-): keys share-1, share-2, ...
        identityKey: age-identity   # optional: holds the age identity of another custodian
        shares: 2                   # optional: how many shares it holds (invariant, init);
                                    # without it, counted as all of them until read
        place: rack-1               # optional: see "Places" below
      - name: token
        kind: kubernetesSecret
        namespace: vault-root       # a place that holds no shares...
        secretName: root-token
        rootTokenKey: root-token    # ...may hold the root token (init/import
        shares: 0                   # --root-token-custodian token), under this key only
      - name: disk
        kind: file
        path: /var/lib/unsealer/shares    # 0600, owned by the unsealer's user
        identityFile: /var/lib/unsealer/age.key   # optional, same rules
        rootTokenFile: /var/lib/unsealer/root-token  # optional, same rules: may hold the
                                    # root token (--root-token-custodian disk), never beside
                                    # the shares
        encryptedFor: age1...       # optional: entries are age-encrypted to this recipient...
        identityFrom: kube-a        # ...and this other custodian holds the identity
      - name: node-b
        kind: peer                  # another unsealer's peer server (mutual TLS)
        url: https://unsealer-b.example:8443
        caFile: /etc/unsealer/peer/ca.crt
        certFile: /etc/unsealer/peer/tls.crt
        keyFile: /etc/unsealer/peer/tls.key
        serverName: unsealer-b      # optional: the name the server's certificate must carry
        timeoutSeconds: 10          # optional
        shares: 1
      - name: dev
        kind: env                   # development only: logs a warning
        variable: UNSEALER_DEV_SHARES
        identityVariable: UNSEALER_DEV_AGE_IDENTITY   # optional
    peerServer:                     # optional: release some of our custodians to peers
      host: 0.0.0.0                 # optional (default 0.0.0.0)
      port: 8443                    # optional (default 8443)
      caFile: /etc/unsealer/peer/ca.crt
      certFile: /etc/unsealer/peer/tls.crt
      keyFile: /etc/unsealer/peer/tls.key
      allowedPeers: [unsealer-a]    # required: certificate names (CN or DNS SAN) served
      releases: [disk]              # the custodians whose shares peers may receive
      rateLimit:                    # optional, per peer certificate name
        burst: 10                   # releases at once (default 10, at most 255)
        refillSeconds: 6            # one more release every refillSeconds (default 6, <= 3600)

Places. Custodians that fail or leak together share a *place*, and the invariant counts places,
not names (:mod:`.invariant`). Each custodian's place is derived unless ``place:`` declares it:
a ``kubernetesSecret`` is in ``namespace/<namespace>`` (whoever reads Secrets there reads every
Secret there, whatever its name or key prefix); a ``file`` is on ``node/<node>``, this node
(``NODE_NAME``, from the downward API, else the host name); an ``env`` custodian (development
only) is in ``process``: its environment leaks through other ways than the node's disk (a pod
spec, ``ps e``), though root on the node reads both; a ``peer`` is
``peer/<serverName or URL host>``. Declare a place to group custodians the
derivation cannot see together (two namespaces one team administers: ``place: team-ops``) or to
tell apart what it lumps together (a file on a removable disk: ``place: usb-key``). The root
token may only be kept in a place that holds no shares: every custodian there says
``shares: 0``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import structlog
import yaml

from unsealer.custody.encryption import parse_recipient
from unsealer.custody.file import private_file_problem

log = structlog.get_logger("unsealer.custody")

#: Whether local files are checked (see parse_config's ``local_files``).
_LOCAL_FILES: ContextVar[bool] = ContextVar("custody_local_files", default=True)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


class CustodyConfigError(ValueError):
    """The custody config is unusable; the message names the file, custodian and field."""


@dataclass(frozen=True)
class Encryption:
    recipient: str
    identity_from: str


@dataclass(frozen=True, kw_only=True)
class CustodianConfig:
    kind: ClassVar[str]
    #: Whether the unsealer can write this custodian (init/import).
    writable: ClassVar[bool] = True
    name: str
    #: How many shares it holds, when stated (the static invariant check, distribution).
    shares: int | None = None
    encryption: Encryption | None = None
    #: Where it is, for the invariant: declared (``place:``) or derived (see the module doc).
    place: str = ""

    @property
    def holds_shares(self) -> bool:
        """Whether it may hold shares: all but the custodians declared ``shares: 0``."""
        return self.shares != 0

    @property
    def holds_root_token(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class KubeSecretConfig(CustodianConfig):
    kind: ClassVar[str] = "kubernetesSecret"
    namespace: str
    secret_name: str
    key_prefix: str = "share-"
    identity_key: str | None = None
    #: The data key of the root token, when this custodian may hold it (never a share key).
    root_token_key: str | None = None

    @property
    def holds_root_token(self) -> bool:
        return self.root_token_key is not None


@dataclass(frozen=True, kw_only=True)
class FileConfig(CustodianConfig):
    kind: ClassVar[str] = "file"
    path: Path
    identity_file: Path | None = None
    #: The 0600 file of the root token, when this custodian may hold it (never ``path``).
    root_token_file: Path | None = None

    @property
    def holds_root_token(self) -> bool:
        return self.root_token_file is not None


@dataclass(frozen=True, kw_only=True)
class PeerConfig(CustodianConfig):
    kind: ClassVar[str] = "peer"
    writable: ClassVar[bool] = False
    url: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True, kw_only=True)
class EnvironmentConfig(CustodianConfig):
    kind: ClassVar[str] = "env"
    writable: ClassVar[bool] = False
    variable: str
    identity_variable: str | None = None


@dataclass(frozen=True, kw_only=True)
class PeerServerConfig:
    ca_file: Path
    cert_file: Path
    key_file: Path
    releases: tuple[str, ...]
    allowed_peers: tuple[str, ...] = ()
    host: str = "0.0.0.0"
    port: int = 8443
    #: Per peer: ``burst`` releases at once, one more every ``refill_seconds``.
    burst: int = 10
    refill_seconds: float = 6.0


@dataclass(frozen=True, kw_only=True)
class CustodyConfig:
    source: str
    custodians: tuple[CustodianConfig, ...]
    threshold: int | None = None
    shares: int | None = None
    peer_server: PeerServerConfig | None = None

    def custodian(self, name: str) -> CustodianConfig:
        for custodian in self.custodians:
            if custodian.name == name:
                return custodian
        raise KeyError(name)

    @property
    def share_custodians(self) -> tuple[CustodianConfig, ...]:
        """The custodians the unsealer reads: all that may hold shares (not those declared
        ``shares: 0``) and those that hold another's identity. A root-token-only custodian is
        not among them, so ``unsealer run`` needs no right on it."""
        holders = {c.encryption.identity_from for c in self.custodians if c.encryption}
        return tuple(c for c in self.custodians if c.holds_shares or c.name in holders)

    def place_of(self, name: str) -> str:
        return self.custodian(name).place


def this_node(environ: Mapping[str, str] | None = None) -> str:
    """The node this process runs on: ``NODE_NAME`` (the downward API's ``spec.nodeName``),
    else the host name."""
    node = (os.environ if environ is None else environ).get("NODE_NAME", "").strip()
    return node or socket.gethostname()


def load_config(
    path: Path,
    *,
    vault_namespace: str,
    require_files: bool = True,
    node: str | None = None,
    local_files: bool = True,
) -> CustodyConfig:
    """Read and validate the custody config at ``path``.

    ``vault_namespace`` is where Vault runs (no Secret custodian may live there).
    ``require_files=False`` lets share files not exist yet (``init`` creates them); files that
    exist are held to the 0600/owner rule either way. ``node`` is the node this process runs on
    (default :func:`this_node`), the place of file and env custodians.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CustodyConfigError(f"custody config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # garbage, or a binary file in its place: never quoted
        raise CustodyConfigError(f"custody config {path}: not UTF-8 text (byte {exc.start}"
                                 " is not); is it the right file?") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CustodyConfigError(f"custody config {path}: not valid YAML{where}") from None
    return parse_config(
        document, source=str(path), vault_namespace=vault_namespace, require_files=require_files,
        node=node, local_files=local_files,
    )


def parse_config(
    document: Any,
    *,
    source: str,
    vault_namespace: str,
    require_files: bool = True,
    node: str | None = None,
    local_files: bool = True,
) -> CustodyConfig:
    """Validate an already-parsed config document (see :func:`load_config`).

    ``local_files=False`` skips every check of a local file (share files, TLS files): for a
    config read away from the node it describes (``unsealer custody rbac``).
    """
    node = node or this_node()
    token = _LOCAL_FILES.set(local_files)
    try:
        return _parse_config(document, source=source, vault_namespace=vault_namespace,
                             require_files=require_files, node=node)
    finally:
        _LOCAL_FILES.reset(token)


def _parse_config(
    document: Any, *, source: str, vault_namespace: str, require_files: bool, node: str
) -> CustodyConfig:
    top = _Fields(document, where=f"custody config {source}")
    threshold = top.optional("threshold", _count)
    total = top.optional("shares", _count)
    items = top.require("custodians", _list)
    peer_server_doc = top.optional("peerServer", _identity)
    top.finish()
    if threshold is not None and total is not None and threshold > total:
        raise CustodyConfigError(
            f"custody config {source}: threshold {threshold} is larger than shares {total}"
        )
    if not items:
        raise CustodyConfigError(f"custody config {source}: no custodians")

    custodians: list[CustodianConfig] = []
    for index, item in enumerate(items, start=1):
        custodian = _custodian(
            item,
            where=f"custody config {source}",
            index=index,
            vault_namespace=vault_namespace,
            require_files=require_files,
            node=node,
        )
        if any(c.name == custodian.name for c in custodians):
            raise CustodyConfigError(
                f"custody config {source}: custodian {custodian.name!r} is defined twice"
            )
        custodians.append(custodian)

    by_name = {c.name: c for c in custodians}
    for custodian in custodians:
        _check_identity_holder(custodian, by_name, where=f"custody config {source}")
        _check_root_token_place(custodian, custodians, where=f"custody config {source}")
        if isinstance(custodian, EnvironmentConfig):
            log.warning(
                "custody.environment.development_only",
                custodian=custodian.name,
                variable=custodian.variable,
                message="shares in an environment variable are visible to anyone who can "
                "inspect this process or its pod spec; use this only for development",
            )

    peer_server = None
    if peer_server_doc is not None:
        peer_server = _peer_server(
            peer_server_doc, by_name, where=f"custody config {source}: peerServer"
        )
    return CustodyConfig(
        source=source,
        custodians=tuple(custodians),
        threshold=threshold,
        shares=total,
        peer_server=peer_server,
    )


def _custodian(
    item: Any, *, where: str, index: int, vault_namespace: str, require_files: bool, node: str
) -> CustodianConfig:
    fields = _Fields(item, where=f"{where}: custodian #{index}")
    name = fields.require("name", _name)
    fields.where = f"{where}: custodian {name!r}"
    kind = fields.require("kind", _text)
    declared = fields.optional("place", _text)
    common: dict[str, Any] = {"name": name, "shares": fields.optional("shares", _whole)}
    recipient = fields.optional("encryptedFor", _recipient)
    identity_from = fields.optional("identityFrom", _name)
    if (recipient is None) != (identity_from is None):
        fields.fail("encryptedFor", "encryptedFor and identityFrom go together")
    if recipient is not None and identity_from is not None:
        common["encryption"] = Encryption(recipient=recipient, identity_from=identity_from)

    custodian: CustodianConfig
    if kind == KubeSecretConfig.kind:
        namespace = fields.require("namespace", _name)
        if namespace == vault_namespace:
            fields.fail(
                "namespace",
                f"must not be Vault's namespace {vault_namespace!r}: whoever can read "
                "Secrets there would hold Vault's data and its shares together",
            )
        key_prefix = fields.optional("keyPrefix", _secret_key) or "share-"
        identity_key = fields.optional("identityKey", _secret_key)
        root_token_key = fields.optional("rootTokenKey", _secret_key)
        if root_token_key is not None:
            if re.fullmatch(rf"{re.escape(key_prefix)}[1-9][0-9]*", root_token_key):
                fields.fail("rootTokenKey", f"{root_token_key!r} would read as a share key "
                            f"({key_prefix}N): the root token never mixes with shares")
            if root_token_key == identity_key:
                fields.fail("rootTokenKey", "must differ from identityKey")
        custodian = KubeSecretConfig(
            **common,
            place=declared or f"namespace/{namespace}",
            namespace=namespace,
            secret_name=fields.require("secretName", _secret_name),
            key_prefix=key_prefix,
            identity_key=identity_key,
            root_token_key=root_token_key,
        )
    elif kind == FileConfig.kind:
        path = fields.require("path", _path)
        identity_file = fields.optional("identityFile", _path)
        root_token_file = fields.optional("rootTokenFile", _path)
        # A file declared to hold no shares (the root token's) is never read for shares.
        _check_private(fields, "path", path, require=require_files and common["shares"] != 0)
        if identity_file is not None:
            _check_private(fields, "identityFile", identity_file, require=require_files)
        if root_token_file is not None:
            if root_token_file in (path, identity_file):
                fields.fail("rootTokenFile", "must be a file of its own: the root token never "
                            "mixes with shares or an identity")
            # Never required: it exists only once a root token was stored there.
            _check_private(fields, "rootTokenFile", root_token_file, require=False)
        custodian = FileConfig(
            **common, place=declared or f"node/{node}", path=path, identity_file=identity_file,
            root_token_file=root_token_file,
        )
    elif kind == PeerConfig.kind:
        if "encryption" in common:
            fields.fail("encryptedFor", "a peer's shares are decrypted by the peer")
        url = fields.require("url", _text)
        if not url.startswith("https://"):
            fields.fail("url", "must be an https:// URL (peers talk mutual TLS)")
        server_name = fields.optional("serverName", _text)
        custodian = PeerConfig(
            **common,
            place=declared or f"peer/{server_name or _url_host(url)}",
            url=url,
            ca_file=_readable(fields, "caFile"),
            cert_file=_readable(fields, "certFile"),
            key_file=_readable(fields, "keyFile"),
            server_name=server_name,
            timeout=fields.optional("timeoutSeconds", _positive) or 10.0,
        )
    elif kind == EnvironmentConfig.kind:
        custodian = EnvironmentConfig(
            **common,
            place=declared or "process",
            variable=fields.require("variable", _env_name),
            identity_variable=fields.optional("identityVariable", _env_name),
        )
    else:
        fields.fail("kind", f"unknown kind {kind!r} (kubernetesSecret, file, peer or env)")
    fields.finish()
    return custodian


def _check_identity_holder(
    custodian: CustodianConfig, by_name: Mapping[str, CustodianConfig], *, where: str
) -> None:
    if custodian.encryption is None:
        return
    prefix = f"{where}: custodian {custodian.name!r}: field 'identityFrom'"
    holder = by_name.get(custodian.encryption.identity_from)
    if holder is None:
        raise CustodyConfigError(
            f"{prefix}: no custodian is named {custodian.encryption.identity_from!r}"
        )
    # The same custodian holding its own identity is legal to load and reported by the
    # invariant, which is the one place that decides what may run.
    location = {
        KubeSecretConfig: "identityKey",
        FileConfig: "identityFile",
        EnvironmentConfig: "identityVariable",
    }.get(type(holder))
    if location is None:
        raise CustodyConfigError(f"{prefix}: a {holder.kind} custodian cannot hold an identity")
    if getattr(holder, _snake(location)) is None:
        raise CustodyConfigError(
            f"{prefix}: custodian {holder.name!r} needs {location!r} to hold the identity"
        )


def _check_root_token_place(
    custodian: CustodianConfig, custodians: Sequence[CustodianConfig], *, where: str
) -> None:
    """The root token only in a place that holds no shares: whoever reads it must not also read
    shares (the unsealer's own reads included, which then need no right on the root token)."""
    if not custodian.holds_root_token:
        return
    field = "rootTokenKey" if isinstance(custodian, KubeSecretConfig) else "rootTokenFile"
    beside = [
        f"{c.name} ({'an unknown number: no shares count' if c.shares is None else c.shares})"
        for c in custodians
        if c.place == custodian.place and c.holds_shares
    ]
    if beside:
        raise CustodyConfigError(
            f"{where}: custodian {custodian.name!r}: field {field!r}: the root token must be "
            f"kept in a place that holds no shares, but {custodian.place} holds shares of "
            f"{', '.join(beside)}; keep it at a custodian of its own elsewhere (shares: 0)"
        )


def _url_host(url: str) -> str:
    return urlsplit(url).hostname or url


def _peer_server(
    document: Any, by_name: Mapping[str, CustodianConfig], *, where: str
) -> PeerServerConfig:
    fields = _Fields(document, where=where)
    releases = tuple(fields.require("releases", _names))
    for name in releases:
        released = by_name.get(name)
        if released is None:
            fields.fail("releases", f"no custodian is named {name!r}")
        if isinstance(released, PeerConfig):
            fields.fail("releases", f"{name!r} is a peer; a peer server does not relay")
        if released is not None and not released.holds_shares:
            fields.fail("releases", f"{name!r} holds no shares (shares: 0)")
    config = PeerServerConfig(
        ca_file=_readable(fields, "caFile"),
        cert_file=_readable(fields, "certFile"),
        key_file=_readable(fields, "keyFile"),
        releases=releases,
        # Required: without it any certificate the peer CA signed would receive shares.
        allowed_peers=tuple(fields.require("allowedPeers", _peer_names)),
        host=fields.optional("host", _text) or "0.0.0.0",
        port=fields.optional("port", _port) or 8443,
        **_rate_limit(fields.optional("rateLimit", _identity), where=f"{where}: rateLimit"),
    )
    fields.finish()
    return config


def _rate_limit(document: Any, *, where: str) -> dict[str, Any]:
    """``burst`` and ``refillSeconds``, bounded: the limit caps what a stolen peer certificate
    takes while a pod is sealed, so it can be tightened or loosened, never switched off."""
    if document is None:
        return {}
    fields = _Fields(document, where=where)
    limit: dict[str, Any] = {}
    burst = fields.optional("burst", _count)
    if burst is not None:
        limit["burst"] = burst
    refill = fields.optional("refillSeconds", _positive)
    if refill is not None:
        if refill > 3600:
            fields.fail("refillSeconds", "must be at most 3600 (one release an hour)")
        limit["refill_seconds"] = refill
    fields.finish()
    return limit


def _check_private(fields: _Fields, key: str, path: Path, *, require: bool) -> None:
    if not _LOCAL_FILES.get():
        return
    problem = private_file_problem(path)
    if problem:
        fields.fail(key, f"refusing to start: {problem}")
    if require and not path.exists():
        fields.fail(key, f"{path} does not exist")


def _readable(fields: _Fields, key: str) -> Path:
    path = fields.require(key, _path)
    if _LOCAL_FILES.get() and not os.access(path, os.R_OK):
        fields.fail(key, f"{path} does not exist or is not readable")
    return path


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


# --- field parsing ----------------------------------------------------------------------------

T = TypeVar("T")


class _Fields:
    """A mapping read field by field, so that leftovers (typos) can be refused."""

    def __init__(self, document: Any, *, where: str) -> None:
        if not isinstance(document, dict):
            raise CustodyConfigError(f"{where}: expected a mapping")
        self.document = document
        self.where = where
        self.seen: set[str] = set()

    def require(self, key: str, convert: Callable[[Any], T]) -> T:
        if self.document.get(key) is None:
            self.fail(key, "is required")
        return self._convert(key, convert)

    def optional(self, key: str, convert: Callable[[Any], T]) -> T | None:
        if self.document.get(key) is None:
            self.seen.add(key)
            return None
        return self._convert(key, convert)

    def finish(self) -> None:
        unknown = sorted(str(key) for key in self.document if key not in self.seen)
        if unknown:
            raise CustodyConfigError(f"{self.where}: unknown field(s) {', '.join(unknown)}")

    def fail(self, key: str, message: str) -> Any:
        raise CustodyConfigError(f"{self.where}: field {key!r}: {message}")

    def _convert(self, key: str, convert: Callable[[Any], T]) -> T:
        self.seen.add(key)
        try:
            return convert(self.document[key])
        except (TypeError, ValueError) as exc:
            return self.fail(key, str(exc))  # type: ignore[no-any-return]


def _identity(value: Any) -> Any:
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("must be a non-empty string")
    return value.strip()


def _texts(value: Any) -> list[str]:
    return [_text(item) for item in _list(value)]


def _peer_names(value: Any) -> list[str]:
    names = _texts(value)
    if not names:
        raise ValueError("must name at least one peer certificate (CN or DNS SAN)")
    return names


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("must be a list")
    return value


def _name(value: Any) -> str:
    text = _text(value)
    if not _NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a DNS label (lowercase letters, digits, '-')")
    return text


def _names(value: Any) -> list[str]:
    return [_name(item) for item in _list(value)]


def _secret_name(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", text):
        raise ValueError(f"{text!r} is not a Kubernetes object name")
    return text


def _secret_key(value: Any) -> str:
    text = _text(value)
    if not _SECRET_KEY.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid Secret key")
    return text


def _env_name(value: Any) -> str:
    text = _text(value)
    if not _ENV_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not an environment variable name")
    return text


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError("must be a whole number")
    return value


def _count(value: Any) -> int:
    number = _whole(value)
    if not 1 <= number <= 255:
        raise ValueError("must be between 1 and 255")
    return number


def _port(value: Any) -> int:
    number = _whole(value)
    if not 0 <= number <= 65535:
        raise ValueError("must be a port number")
    return number


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise TypeError("must be a number greater than 0")
    return float(value)


def _recipient(value: Any) -> str:
    text = _text(value)
    parse_recipient(text)
    return text
