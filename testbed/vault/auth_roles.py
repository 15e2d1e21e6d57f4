"""What the JWT-based auth methods (``kubernetes``, ``jwt``) share: roles, config, keys, login.

Both plugins keep one ``config`` and a set of named roles under ``role/``, with the same list /
read / write / delete answers (404 for a missing role or an empty list), roles carrying the
``token_*`` fields of :class:`TokenFields`, ``pem``-encoded verification keys that may be keys or
certificates, glob-matched bound values, and a login that mints an orphan token from the role.
Only the method-specific parts (config and role validation, the login checks) live in
``auth_kubernetes.py`` and ``auth_jwt.py``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.logical import Backend, Request, Response, Services
from testbed.vault.token_fields import TokenFields

#: The asymmetric algorithms both plugins accept (no ``HS*``, no ``none``); a JWT mount's
#: ``jwt_supported_algs`` may narrow them.
ALLOWED_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
]


def glob_match(patterns: list[str], value: str) -> bool:
    """Vault's ``StrListContainsGlob``: ``*`` matches any run of characters, anywhere."""
    for pattern in patterns:
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if re.fullmatch(regex, value, re.DOTALL):
            return True
    return False


def public_key(pem: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """A configured PEM entry, a public key or a certificate (RSA or ECDSA); else ValueError."""
    data = pem.strip().encode()
    key: object
    if data.startswith(b"-----BEGIN CERTIFICATE-----"):
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("unsupported key type")
    return key


@dataclass(kw_only=True)
class TokenRole:
    """A role: the method's own bindings (in subclasses) plus the token a login mints."""

    token: TokenFields = field(default_factory=TokenFields)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        fields = dict(state)
        token = TokenFields(**fields.pop("token", {}))
        return cls(**fields, token=token)

    def describe(self) -> dict[str, Any]:
        """A role read: the bindings, then the ``token_*`` fields (legacy names mirrored)."""
        described = {k: v for k, v in asdict(self).items() if k != "token"}
        described.update(self.token.describe())
        return described


ConfigT = TypeVar("ConfigT")
RoleT = TypeVar("RoleT", bound=TokenRole)


class RoleBackend(Backend, Generic[ConfigT, RoleT]):
    """``config``, ``role/`` and ``login`` routing and state for a role-based auth method.

    Subclasses name their ``config_class`` and ``role_class`` and implement ``_write_config``,
    ``_write_role`` and ``_login``; ``_describe_config`` and ``_role_name`` may be overridden.
    """

    unauthenticated = frozenset({"login"})
    config_class: ClassVar[type[Any]]
    role_class: ClassVar[type[Any]]

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        state = state or {}
        config = state.get("config")
        self.config: ConfigT | None = self.config_class(**config) if config is not None else None
        self.roles: dict[str, RoleT] = {
            name: self.role_class.from_state(role) for name, role in state.get("roles", {}).items()
        }

    def dump(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config) if self.config is not None else None,  # type: ignore[call-overload]
            "roles": {name: asdict(role) for name, role in self.roles.items()},
        }

    async def handle(self, request: Request) -> Response | None:
        op, path = request.operation, request.path
        writes = op in ("create", "update")
        if path == "login" and writes:
            return await self._login(request)
        if path == "config":
            if op == "read":
                if self.config is None:
                    raise VaultError(404)
                return Response(data=self._describe_config(self.config))
            if writes:
                self._write_config(request.data)
                return None
        if path in ("role", "role/") and op == "list":
            if not self.roles:
                raise VaultError(404)
            return Response(data={"keys": sorted(self.roles)})
        if path.startswith("role/") and len(path) > len("role/"):
            name = self._role_name(path[len("role/") :])
            if op == "read":
                role = self.roles.get(name)
                if role is None:
                    raise VaultError(404)
                return Response(data=role.describe())
            if writes:
                self._write_role(name, request.data)
                return None
            if op == "delete":
                if self.roles.pop(name, None) is not None:
                    self.changed()
                return None
        raise unsupported_operation()

    @staticmethod
    def _role_name(raw: str) -> str:
        return raw

    def _describe_config(self, config: ConfigT) -> dict[str, Any]:
        described: dict[str, Any] = asdict(config)  # type: ignore[call-overload]
        return described

    def _write_config(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _write_role(self, name: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _login(self, request: Request) -> Response:
        raise NotImplementedError

    def _issue(
        self,
        role: TokenRole,
        *,
        request: Request,
        display_name: str,
        meta: dict[str, str],
        name: str,
    ) -> Response:
        """The login answer: an orphan token shaped by the role's ``token_*`` fields."""
        entry = self.services.tokens.create(
            role.token.token_request(
                path=f"{request.mount_path}login", display_name=display_name, meta=meta, role=name
            )
        )
        return Response(auth=entry.auth_block(self.services.clock.now()))
