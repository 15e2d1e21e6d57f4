"""ServiceAccount tokens: TokenRequest issues RS256 JWTs; TokenReview and authentication check them.

The claims follow the real bound service-account tokens (``iss``, ``sub``, ``aud``, ``exp``,
``iat``, ``nbf``, ``jti`` and the ``kubernetes.io`` block with namespace, service account and
optional pod binding), because Vault's kubernetes auth reads the namespace and name out of them
before asking for a TokenReview. A token stops validating when it expires, when its audience does
not intersect the requested ones, or when the ServiceAccount (or the bound pod) it names was
deleted or recreated with another uid.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testbed.kube.meta import Obj, new_uid, rfc3339

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = (ISSUER,)


@dataclass(frozen=True)
class User:
    """An authenticated requester."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups

    def info(self) -> Obj:
        out: Obj = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


ADMIN = User(
    "kubernetes-admin", ("kubeadm:cluster-admins", "system:masters", "system:authenticated")
)


def service_account_user(
    namespace: str, name: str, uid: str = "", extra: dict[str, list[str]] | None = None
) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        uid,
        extra or {},
    )


class TokenError(Exception):
    pass


class Signer:
    """Holds the service-account signing key and issues/verifies tokens."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.kid = new_uid().replace("-", "")[:43]

    def issue(
        self,
        *,
        namespace: str,
        sa_name: str,
        sa_uid: str,
        audiences: list[str],
        seconds: int,
        pod: Obj | None = None,
        node: str = "",
    ) -> tuple[str, dt.datetime]:
        issued = int(time.time())
        expires = issued + seconds
        k8s: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": sa_name, "uid": sa_uid},
        }
        if pod is not None:
            k8s["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid", "")}
            if node:
                k8s["node"] = {"name": node, "uid": ""}
        claims = {
            "aud": audiences,
            "exp": expires,
            "iat": issued,
            "iss": ISSUER,
            "jti": new_uid(),
            "kubernetes.io": k8s,
            "nbf": issued,
            "sub": f"system:serviceaccount:{namespace}:{sa_name}",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return token, dt.datetime.fromtimestamp(expires, dt.UTC)

    def verify(self, token: str) -> dict[str, Any]:
        """Signature and expiry only; audience and liveness are checked by the caller."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "iat", "sub"]},
                issuer=ISSUER,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("Token has expired.") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError(str(exc) or "invalid token") from exc
        return claims


def token_request_response(request: Obj, token: str, expires: dt.datetime) -> Obj:
    """The TokenRequest object answered by ``POST serviceaccounts/x/token``."""
    spec = dict(request.get("spec") or {})
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {**(request.get("metadata") or {}), "creationTimestamp": rfc3339()},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(expires)},
    }
