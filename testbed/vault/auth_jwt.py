"""The JWT auth method (``role_type: jwt``): a signed JWT from a trusted issuer buys a token.

Vault checks the signature against the configured keys (``jwt_validation_pubkeys``, PEM) or a
key set fetched from ``jwks_url``, then the time claims (with leeway), ``bound_issuer``, the
role's ``bound_subject``, ``bound_audiences`` and ``bound_claims``, and names the login after
the role's ``user_claim``. The emulation does the same and answers with the plugin's messages
(``vault-plugin-auth-jwt``'s ``path_login.go``: every refusal is a 400 error response). OIDC
roles, OIDC discovery, claim mappings and groups are not emulated (see ``testbed/README.md``).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import jwt

from testbed.vault.auth_kubernetes import ALLOWED_ALGORITHMS, _public_key, glob_match
from testbed.vault.errors import VaultError, unsupported_operation
from testbed.vault.logical import Backend, Request, Response, Services
from testbed.vault.params import get_duration, get_list, get_str
from testbed.vault.token_fields import TokenFields

#: go-jose's default leeway on ``exp``/``nbf``/``iat``, which the plugin applies when a role's
#: ``clock_skew_leeway`` is 0.
_CLOCK_SKEW_LEEWAY = 60
#: Leeway the plugin assumes for a token that lacks ``exp`` (or ``nbf``).
_CLAIM_DEFAULT_LEEWAY = 150


@dataclass
class JWTConfig:
    jwt_validation_pubkeys: list[str] = field(default_factory=list)
    jwks_url: str = ""
    jwks_ca_pem: str = ""
    bound_issuer: str = ""
    default_role: str = ""
    jwt_supported_algs: list[str] = field(default_factory=list)


@dataclass
class JWTRole:
    role_type: str
    user_claim: str
    bound_audiences: list[str] = field(default_factory=list)
    bound_subject: str = ""
    #: Claim name to the allowed values (Vault takes a string or a list; kept as a list).
    bound_claims: dict[str, list[str]] = field(default_factory=dict)
    bound_claims_type: str = "string"
    clock_skew_leeway: int = 0
    token: TokenFields = field(default_factory=TokenFields)

    def describe(self) -> dict[str, Any]:
        described = {k: v for k, v in asdict(self).items() if k != "token"}
        described.update(self.token.describe())
        return described


def _error(message: str) -> VaultError:
    return VaultError(400, message)


def _bound_claims(value: Any) -> dict[str, list[str]]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _error("error parsing bound_claims") from None
    if not isinstance(value, dict):
        raise _error("bound_claims must be a map")
    out: dict[str, list[str]] = {}
    for name, allowed in value.items():
        items = allowed if isinstance(allowed, list) else [allowed]
        out[str(name)] = [str(item) for item in items]
    return out


def _audiences(claims: dict[str, Any]) -> list[str]:
    audience = claims.get("aud")
    if audience is None:
        return []
    return [audience] if isinstance(audience, str) else [str(a) for a in audience]


class JWTAuthBackend(Backend):
    mount_type = "jwt"
    unauthenticated = frozenset({"login"})

    def __init__(self, *, services: Services, state: dict[str, Any] | None) -> None:
        super().__init__(services=services, state=state)
        state = state or {}
        config = state.get("config")
        self.config: JWTConfig | None = JWTConfig(**config) if config is not None else None
        self.roles: dict[str, JWTRole] = {}
        for name, role in state.get("roles", {}).items():
            token = TokenFields(**role.pop("token", {}))
            self.roles[name] = JWTRole(**role, token=token)

    def dump(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config) if self.config is not None else None,
            "roles": {name: asdict(role) for name, role in self.roles.items()},
        }

    async def handle(self, request: Request) -> Response | None:
        op, path = request.operation, request.path
        writes = op in ("create", "update")
        if path == "login" and writes:
            return await self._login(request.data, mount_path=request.mount_path)
        if path == "config":
            if op == "read":
                if self.config is None:
                    raise VaultError(404)
                return Response(data=asdict(self.config))
            if writes:
                self._write_config(request.data)
                return None
        if path in ("role", "role/") and op == "list":
            if not self.roles:
                raise VaultError(404)
            return Response(data={"keys": sorted(self.roles)})
        if path.startswith("role/") and len(path) > len("role/"):
            name = path[len("role/"):].lower()
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

    # -- configuration ---------------------------------------------------------------------

    def _write_config(self, data: dict[str, Any]) -> None:
        keys = get_list(data, "jwt_validation_pubkeys") or []
        jwks_url = get_str(data, "jwks_url")
        if get_str(data, "oidc_discovery_url"):
            raise _error("OIDC discovery is not supported by the emulation")
        if bool(keys) == bool(jwks_url):
            raise _error("exactly one of 'oidc_discovery_url', 'jwks_url', 'jwks_pairs', or "
                         "'jwt_validation_pubkeys' must be set")
        for pem in keys:
            try:
                _public_key(pem)
            except ValueError:
                raise _error("error parsing public key") from None
        self.config = JWTConfig(
            jwt_validation_pubkeys=keys, jwks_url=jwks_url,
            jwks_ca_pem=get_str(data, "jwks_ca_pem"),
            bound_issuer=get_str(data, "bound_issuer"),
            default_role=get_str(data, "default_role").lower(),
            jwt_supported_algs=get_list(data, "jwt_supported_algs") or [],
        )
        self.changed()

    def _write_role(self, name: str, data: dict[str, Any]) -> None:
        role = self.roles.get(name)
        role_type = get_str(data, "role_type", role.role_type if role else "oidc")
        if role_type not in ("oidc", "jwt"):
            raise _error("invalid 'role_type': " + role_type)
        user_claim = get_str(data, "user_claim", role.user_claim if role else "")
        if not user_claim:
            raise _error("a user claim must be defined on the role")
        audiences = get_list(data, "bound_audiences")
        claims_type = get_str(data, "bound_claims_type",
                              role.bound_claims_type if role else "string")
        if claims_type not in ("string", "glob"):
            raise _error(f"invalid 'bound_claims_type': {claims_type}")
        token = role.token if role is not None else TokenFields()
        token.update(data)
        updated = JWTRole(
            role_type=role_type,
            user_claim=user_claim,
            bound_audiences=audiences if audiences is not None else (
                role.bound_audiences if role else []),
            bound_subject=get_str(data, "bound_subject", role.bound_subject if role else ""),
            bound_claims=(_bound_claims(data["bound_claims"]) if "bound_claims" in data
                          else (role.bound_claims if role else {})),
            bound_claims_type=claims_type,
            clock_skew_leeway=get_duration(data, "clock_skew_leeway",
                                           role.clock_skew_leeway if role else 0),
            token=token,
        )
        if role_type == "jwt" and not (updated.bound_audiences or updated.bound_subject
                                       or updated.bound_claims):
            raise _error("must have at least one bound constraint when creating/updating a "
                         "role")
        self.roles[name] = updated
        self.changed()

    # -- login -----------------------------------------------------------------------------

    async def _login(self, data: dict[str, Any], *, mount_path: str) -> Response:
        config = self.config
        if config is None:
            raise _error("could not load configuration")
        role_name = get_str(data, "role").lower() or config.default_role
        if not role_name:
            raise _error("missing role")
        role = self.roles.get(role_name)
        if role is None:
            raise _error(f'role "{role_name}" could not be found')
        if role.role_type == "oidc":
            raise _error("role with oidc role_type is not allowed")
        token = get_str(data, "jwt")
        if not token:
            raise _error("missing token")
        claims = await self._verified_claims(token, config)
        self._check_claims(claims, role, config)
        user = claims.get(role.user_claim)
        if user is None:
            raise _error(f'claim "{role.user_claim}" not found in token')
        if not isinstance(user, str):
            raise _error(f'claim "{role.user_claim}" could not be converted to string')
        entry = self.services.tokens.create(
            role.token.token_request(
                path=f"{mount_path}login", display_name=f"{mount_path.split('/')[1]}-{user}",
                meta={"role": role_name}, role=role_name,
            )
        )
        return Response(auth=entry.auth_block(self.services.clock.now()))

    async def _verified_claims(self, token: str, config: JWTConfig) -> dict[str, Any]:
        algorithms = config.jwt_supported_algs or ALLOWED_ALGORITHMS
        if config.jwks_url:
            keys = await self._jwks(config)
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.PyJWTError as exc:
                raise _error(f"error verifying token: {exc}") from None
            candidates = [k for k in keys if kid is None or k.key_id == kid]
            for key in candidates:
                try:
                    return _decode(token, key.key, algorithms)
                except jwt.PyJWTError:
                    continue
            raise _error("error verifying token: failed to verify id token signature")
        try:
            jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _error(f"error parsing token: {exc}") from None
        for pem in config.jwt_validation_pubkeys:
            try:
                return _decode(token, _public_key(pem), algorithms)
            except (jwt.PyJWTError, ValueError):
                continue
        raise _error("no known key successfully validated the token signature")

    @staticmethod
    async def _jwks(config: JWTConfig) -> list[jwt.PyJWK]:
        context: ssl.SSLContext | bool = True
        if config.jwks_ca_pem:
            context = ssl.create_default_context(cadata=config.jwks_ca_pem)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.get(config.jwks_url, ssl=context) as response,
            ):
                body = await response.json(content_type=None)
            return list(jwt.PyJWKSet.from_dict(body).keys)
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            raise _error(f"error fetching jwks keyset: {type(exc).__name__}") from None

    def _check_claims(self, claims: dict[str, Any], role: JWTRole, config: JWTConfig) -> None:
        now = self.services.clock.now()
        leeway = role.clock_skew_leeway or _CLOCK_SKEW_LEEWAY
        issued, expiry, not_before = (claims.get(k) for k in ("iat", "exp", "nbf"))
        if not any(isinstance(v, int | float) and v for v in (issued, expiry, not_before)):
            raise _error("no issue time, notbefore, or expiration time encoded in token")
        start = max(v for v in (issued, not_before, 0) if isinstance(v, int | float))
        if not isinstance(expiry, int | float) or not expiry:
            expiry = start + _CLAIM_DEFAULT_LEEWAY
        if not isinstance(not_before, int | float) or not not_before:
            not_before = issued if isinstance(issued, int | float) and issued else (
                expiry - _CLAIM_DEFAULT_LEEWAY)
        audiences = _audiences(claims)
        if audiences and not role.bound_audiences:
            raise _error("audience claim found in JWT but no audiences bound to the role")
        prefix = "error validating claims: go-jose/go-jose/jwt: validation failed, "
        if config.bound_issuer and claims.get("iss") != config.bound_issuer:
            raise _error(prefix + "invalid issuer claim (iss)")
        if role.bound_subject and claims.get("sub") != role.bound_subject:
            raise _error(prefix + "invalid subject claim (sub)")
        if now + leeway < not_before:
            raise _error(prefix + "token not valid yet (nbf)")
        if now - leeway > expiry:
            raise _error(prefix + "token is expired (exp)")
        if isinstance(issued, int | float) and issued and now + leeway < issued:
            raise _error(prefix + "token issued in the future (iat)")
        if role.bound_audiences and not set(role.bound_audiences) & set(audiences):
            raise _error("error validating claims: aud claim does not match any bound audience")
        for name, allowed in role.bound_claims.items():
            value = claims.get(name)
            if value is None:
                raise _error(f'error validating claims: claim "{name}" is missing')
            values = [str(v) for v in (value if isinstance(value, list) else [value])]
            if role.bound_claims_type == "glob":
                matched = any(glob_match(allowed, v) for v in values)
            else:
                matched = any(v in allowed for v in values)
            if not matched:
                raise _error(f'error validating claims: claim "{name}" does not match any '
                             "associated bound claim values")


def _decode(token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
    """The claims if the signature verifies; the time and audience claims are checked later."""
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=algorithms,
        options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                 "verify_iat": False, "verify_iss": False},
    )
    return claims
