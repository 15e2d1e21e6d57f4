"""Which Vault addresses syncd may talk to: the operator's allow-list.

A VaultConnection's address is whatever a namespace user writes into it, and syncd sends that
address credentials: a Vault token read from a Secret, or a ServiceAccount token it minted. So
the operator, not the user, decides where those may go. ``--allowed-vault-addresses`` lists exact
URLs or globs; without it, the addresses of the VaultConnections in syncd's own namespace (which
only the operator can write) are the list. A VaultConnection outside it is refused before any
request, with reason ``VaultAddressNotAllowed``.

Matching is by parts, never on the URL's text: the scheme and the path must be equal, the port
equal (or ``*``), and only the host may be a glob (``https://vault-*.vault.svc:8200``). A glob
on the whole text would let ``*`` run across a ``/`` or an ``@`` (``https://evil.example/x.vault.svc``
matching ``https://*.vault.svc``); a parsed host cannot contain either.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ANY_PORT = re.compile(r"(?<=[^/]):\*(/|$)")
_HOST_GLOB = re.compile(r"[-a-z0-9.*?]+")


@dataclass(frozen=True, slots=True)
class Origin:
    """A Vault address, normalised: lowercase scheme and host, explicit port, no trailing /."""

    scheme: str
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def serves(self, url: str) -> bool:
        """Whether ``url`` (any path and query) goes to this scheme, host and port."""
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            return False
        return (scheme, (parts.hostname or "").lower(), port) == (
            self.scheme, self.host, self.port)


def _split(text: str, *, glob: bool) -> Origin:
    try:
        url = urlsplit(text.strip())
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid URL: {exc}") from None
    scheme = url.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r} must be an http:// or https:// URL")
    if url.username is not None or url.password is not None or url.query or url.fragment:
        raise ValueError(f"{text!r} must have no credentials, query or fragment")
    host = (url.hostname or "").lower()
    if not host:
        raise ValueError(f"{text!r} has no host")
    problem = _host_problem(host, glob=glob)
    if problem:
        raise ValueError(f"{text!r}: {problem}")
    return Origin(scheme, host, port or _DEFAULT_PORTS[scheme], url.path.rstrip("/"))


def _host_problem(host: str, *, glob: bool) -> str | None:
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if glob:
        return None if _HOST_GLOB.fullmatch(host) else f"host {host!r} is not a DNS name glob"
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"host {host!r} is not a DNS name or an IP address"
    return None


@functools.lru_cache(maxsize=1024)
def parse_address(text: str) -> Origin:
    """A VaultConnection's address as an :class:`Origin`; ``ValueError`` says what is wrong.

    Cached (a pure function of the text, and an Origin is immutable): every reconcile checks
    its connection's address, and parsing it was 3 % of an unchanged refresh's CPU."""
    return _split(text, glob=False)


@dataclass(frozen=True, slots=True)
class AddressPattern:
    """One entry of ``--allowed-vault-addresses``: an exact URL, or a glob on host or port."""

    text: str
    scheme: str
    host: str
    port: int | None  # None: any port ('*')
    path: str

    @classmethod
    def parse(cls, text: str) -> AddressPattern:
        # ``host:*`` is any port; urlsplit only knows numbers, so it parses the text without it.
        without_port, any_port = _ANY_PORT.subn(r"\1", text.strip(), count=1)
        origin = _split(without_port, glob=True)
        return cls(text=text.strip(), scheme=origin.scheme, host=origin.host,
                   port=None if any_port else origin.port, path=origin.path)

    def matches(self, origin: Origin) -> bool:
        return (origin.scheme == self.scheme and origin.path == self.path
                and (self.port is None or origin.port == self.port)
                and fnmatch.fnmatchcase(origin.host, self.host))


def parse_patterns(text: str) -> tuple[AddressPattern, ...]:
    """Comma-separated patterns (the option's value); ``ValueError`` names the bad one."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise ValueError("give at least one address")
    return tuple(AddressPattern.parse(entry) for entry in entries)


class AllowedAddresses:
    """The allow-list: explicit ``patterns``, or the VaultConnections of ``operator_namespace``.

    ``connections`` returns the VaultConnection objects the cache holds (read at every check,
    so an operator's edit of their own VaultConnection takes effect at once).
    """

    def __init__(
        self,
        *,
        patterns: tuple[AddressPattern, ...] | None,
        operator_namespace: str,
        connections: Callable[[], Iterable[Mapping[str, Any]]],
    ) -> None:
        self._patterns = patterns
        self._operator_namespace = operator_namespace
        self._connections = connections

    def _operator_origins(self) -> set[Origin]:
        origins = set()
        for obj in self._connections():
            if (obj.get("metadata") or {}).get("namespace") != self._operator_namespace:
                continue
            address = (obj.get("spec") or {}).get("address")
            try:
                origins.add(parse_address(str(address)))
            except ValueError:
                continue
        return origins

    def problem(self, *, namespace: str, name: str, address: str) -> str | None:
        """Why VaultConnection ``namespace/name`` may not be used (None: it may)."""
        where = f"VaultConnection {namespace}/{name}: spec.address"
        try:
            origin = parse_address(address)
        except ValueError as exc:
            return f"{where}: {exc}"
        if self._patterns is not None:
            if any(p.matches(origin) for p in self._patterns):
                return None
            rule = "--allowed-vault-addresses"
        else:
            if origin in self._operator_origins():
                return None
            rule = (f"by default, only the addresses of the VaultConnections in namespace"
                    f" {self._operator_namespace}; see --allowed-vault-addresses")
        return (f"{where}: {address!r} is not a Vault address syncd may use ({rule}); use an"
                " address the operator allows, or ask them to add it")
