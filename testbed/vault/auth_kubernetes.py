"""The Kubernetes auth method: a pod trades its service-account JWT for a Vault token.

Vault does not trust the JWT on its own: it decodes the claims (checking the signature only when
``pem_keys`` is configured), matches the service account against the role's bound names and
namespaces (globs allowed), and then asks the cluster's TokenReview API whether the token is
still valid, comparing the reviewed user with the claims (reference §1.9). The emulation does
the same over real HTTP, so the Kubernetes emulation's TokenReview endpoint, or a test's fake,
decides whether a login succeeds, and every rejection carries Vault's status and message.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import jwt

from testbed.vault.auth_roles import (
    ALLOWED_ALGORITHMS,
    RoleBackend,
    TokenRole,
    glob_match,
    public_key,
)
from testbed.vault.errors import VaultError, permission_denied
from testbed.vault.logical import Request, Response
from testbed.vault.params import get_bool, get_list, get_str
from testbed.vault.token_fields import TokenFields

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
_CLOCK_SKEW_LEEWAY = 150  # seconds of leeway on exp/nbf, as the JWT validator Vault uses


@dataclass
class KubeConfig:
    kubernetes_host: str = ""
    kubernetes_ca_cert: str = ""
    token_reviewer_jwt: str = ""
    pem_keys: list[str] = field(default_factory=list)
    disable_local_ca_jwt: bool = False
    issuer: str = ""
    disable_iss_validation: bool = True


@dataclass
class KubeRole(TokenRole):
    bound_service_account_names: list[str]
    bound_service_account_namespaces: list[str]
    audience: str = ""
    alias_name_source: str = "serviceaccount_uid"


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    namespace: str
    uid: str
    secret_name: str
    audiences: list[str]


def _forbidden(message: str) -> VaultError:
    return VaultError(403, message)


def _service_account(claims: dict[str, Any]) -> ServiceAccount:
    """Legacy secret-based claims, overridden by the projected ``kubernetes.io`` block."""
    name = str(claims.get("kubernetes.io/serviceaccount/service-account.name", ""))
    uid = str(claims.get("kubernetes.io/serviceaccount/service-account.uid", ""))
    namespace = str(claims.get("kubernetes.io/serviceaccount/namespace", ""))
    secret_name = str(claims.get("kubernetes.io/serviceaccount/secret.name", ""))
    projected = claims.get("kubernetes.io")
    if isinstance(projected, dict):
        namespace = str(projected.get("namespace", ""))
        account = projected.get("serviceaccount")
        if isinstance(account, dict):
            name = str(account.get("name", ""))
            uid = str(account.get("uid", ""))
    audience = claims.get("aud", [])
    audiences = [audience] if isinstance(audience, str) else [str(a) for a in audience or []]
    return ServiceAccount(
        name=name, namespace=namespace, uid=uid, secret_name=secret_name, audiences=audiences
    )


class KubernetesAuthBackend(RoleBackend[KubeConfig, KubeRole]):
    mount_type = "kubernetes"
    config_class = KubeConfig
    role_class = KubeRole

    # -- configuration ---------------------------------------------------------------------

    def _describe_config(self, config: KubeConfig) -> dict[str, Any]:
        described = asdict(config)
        described.pop("token_reviewer_jwt")
        described["token_reviewer_jwt_set"] = bool(config.token_reviewer_jwt)
        return described

    def _write_config(self, data: dict[str, Any]) -> None:
        host = get_str(data, "kubernetes_host")
        if not host:
            raise VaultError(400, "no host provided")
        ca_cert = get_str(data, "kubernetes_ca_cert")
        if ca_cert:
            try:
                ssl.create_default_context(cadata=ca_cert)
            except (ssl.SSLError, ValueError):
                raise VaultError(
                    400, "The provided CA PEM data contains no valid certificates"
                ) from None
        self.config = KubeConfig(
            kubernetes_host=host.rstrip("/"),
            kubernetes_ca_cert=ca_cert,
            token_reviewer_jwt=get_str(data, "token_reviewer_jwt"),
            pem_keys=get_list(data, "pem_keys") or [],
            disable_local_ca_jwt=get_bool(data, "disable_local_ca_jwt"),
            issuer=get_str(data, "issuer"),
            disable_iss_validation=get_bool(data, "disable_iss_validation", True),
        )
        self.changed()

    def _write_role(self, name: str, data: dict[str, Any]) -> None:
        role = self.roles.get(name)
        names = get_list(data, "bound_service_account_names")
        namespaces = get_list(data, "bound_service_account_namespaces")
        if names is None:
            names = role.bound_service_account_names if role is not None else []
        if namespaces is None:
            namespaces = role.bound_service_account_namespaces if role is not None else []
        if not names:
            raise VaultError(400, '"bound_service_account_names" can not be empty')
        if not namespaces:
            raise VaultError(400, '"bound_service_account_namespaces" can not be empty')
        if len(names) > 1 and "*" in names:
            raise VaultError(400, 'can not mix "*" with values')
        if len(namespaces) > 1 and "*" in namespaces:
            raise VaultError(400, 'can not mix "*" with values')
        alias_source = get_str(data, "alias_name_source", "serviceaccount_uid")
        if alias_source not in ("serviceaccount_uid", "serviceaccount_name"):
            raise VaultError(400, f'invalid alias_name_source "{alias_source}"')
        token = role.token if role is not None else TokenFields()
        token.update(data)
        audience = role.audience if role is not None else ""
        self.roles[name] = KubeRole(
            bound_service_account_names=names,
            bound_service_account_namespaces=namespaces,
            audience=get_str(data, "audience", audience),
            alias_name_source=alias_source,
            token=token,
        )
        self.changed()

    # -- login -----------------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        role_name = get_str(request.data, "role")
        if not role_name:
            raise VaultError(400, "missing role")
        token = get_str(request.data, "jwt")
        if not token:
            raise VaultError(400, "missing jwt")
        role = self.roles.get(role_name)
        if role is None:
            raise VaultError(400, f'invalid role name "{role_name}"')
        if self.config is None:
            raise VaultError(500, "could not load backend configuration")
        account = self._validate(token, role, self.config)
        if not account.uid:
            raise VaultError(500, "could not parse UID from claims")
        if not await self._review(token, role, account, self.config):
            raise permission_denied()
        metadata = {
            "role": role_name,
            "service_account_name": account.name,
            "service_account_namespace": account.namespace,
            "service_account_secret_name": account.secret_name,
            "service_account_uid": account.uid,
        }
        return self._issue(
            role,
            request=request,
            display_name=f"kubernetes-{account.namespace}-{account.name}",
            meta=metadata,
            name=role_name,
        )

    def _validate(self, token: str, role: KubeRole, config: KubeConfig) -> ServiceAccount:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise _forbidden(f"failed to parse JWT: {error}") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise _forbidden(f'unsupported signing algorithm "{header.get("alg")}"')
        if config.pem_keys:
            claims = self._verified_claims(token, config.pem_keys)
        else:
            claims = jwt.decode(token, options={"verify_signature": False})
        now = self.services.clock.now()
        expiry = claims.get("exp")
        if isinstance(expiry, int | float) and now > expiry + _CLOCK_SKEW_LEEWAY:
            raise _forbidden("invalid expiration time (exp) claim: token is expired")
        not_before = claims.get("nbf")
        if isinstance(not_before, int | float) and now < not_before - _CLOCK_SKEW_LEEWAY:
            raise _forbidden("invalid not before (nbf) claim: token not yet valid")
        issuer_checked = not config.disable_iss_validation and config.issuer
        if issuer_checked and claims.get("iss") != config.issuer:
            raise _forbidden("invalid issuer (iss) claim")
        account = _service_account(claims)
        if role.audience.strip() and role.audience not in account.audiences:
            raise _forbidden(
                "invalid audience (aud) claim: audience claim does not match any expected audience"
            )
        names = role.bound_service_account_names
        if (len(names) > 1 or names[0] != "*") and not glob_match(names, account.name):
            raise _forbidden("service account name not authorized")
        namespaces = role.bound_service_account_namespaces
        if namespaces[0] != "*" and not glob_match(namespaces, account.namespace):
            raise _forbidden("namespace not authorized")
        return account

    @staticmethod
    def _verified_claims(token: str, pem_keys: list[str]) -> dict[str, Any]:
        for pem in pem_keys:
            try:
                key = public_key(pem)
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=ALLOWED_ALGORITHMS,
                    options={"verify_aud": False, "verify_exp": False, "verify_nbf": False},
                )
            except (jwt.PyJWTError, ValueError):
                continue
            return claims
        raise permission_denied()  # "failed to verify token signature" is reported as 403

    async def _review(
        self, token: str, role: KubeRole, account: ServiceAccount, config: KubeConfig
    ) -> bool:
        """POST a TokenReview and check the reviewed user is the claimed service account."""
        audiences = [role.audience] if role.audience else account.audiences
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
        bearer = config.token_reviewer_jwt or token
        ssl_context: ssl.SSLContext | bool = True
        if config.kubernetes_ca_cert:
            ssl_context = ssl.create_default_context(cadata=config.kubernetes_ca_cert)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(
                    config.kubernetes_host + TOKEN_REVIEW_PATH,
                    data=json.dumps(body),
                    headers={
                        "Authorization": f"Bearer {bearer}",
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                    },
                    ssl=ssl_context,
                ) as response,
            ):
                if not 200 <= response.status <= 206:
                    return False
                review = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        status = review.get("status") if isinstance(review, dict) else None
        if not isinstance(status, dict) or status.get("error") or not status.get("authenticated"):
            return False
        user = status.get("user") or {}
        parts = str(user.get("username", "")).split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            return False
        return (
            parts[2] == account.namespace
            and parts[3] == account.name
            and user.get("uid") == account.uid
        )
