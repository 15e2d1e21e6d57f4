"""ServiceAccount tokens: TokenRequest issues RS256 JWTs; TokenReview and authentication check them.

The claims follow the real bound service-account tokens (``iss``, ``sub``, ``aud``, ``exp``,
``iat``, ``nbf``, ``jti`` and the ``kubernetes.io`` block with namespace, service account and
optional pod binding), because Vault's kubernetes auth reads the namespace and name out of them
before asking for a TokenReview. A token stops validating when its audience does not intersect
the requested ones (the API server's own, :data:`DEFAULT_AUDIENCES`, for requests to it), when
it expires (with the minute of leeway go-jose's ``Claims.Validate`` gives the real server), or
when the ServiceAccount (or the bound pod) it names was deleted or recreated with another uid;
checked in that order, as kube-apiserver's ``jwtTokenAuthenticator`` does.

The signer has its own clock (:meth:`Signer.advance`), so a test can see a ten-minute token
expire without waiting ten minutes.
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
#: go-jose's ``jwt.DefaultLeeway``, which kube-apiserver's claim validation uses.
LEEWAY_SECONDS = 60


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
        #: Seconds added to the wall clock: what :meth:`advance` moved the API server's time by.
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move this API server's clock (issuing and validating) ``seconds`` forward."""
        self.offset += seconds

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
        issued = int(self.now())
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
        """Signature and issuer only; the caller checks the audience, then :meth:`check_times`."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "require": ["exp", "iat", "sub"]},
                issuer=ISSUER,
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError(str(exc) or "invalid token") from exc
        return claims

    def check_times(self, claims: dict[str, Any]) -> None:
        """Expiry and not-before, with the real server's leeway and messages."""
        now = self.now()
        if now > float(claims["exp"]) + LEEWAY_SECONDS:
            raise TokenError("service account token has expired")
        not_before = claims.get("nbf")
        if isinstance(not_before, int | float) and now < not_before - LEEWAY_SECONDS:
            raise TokenError("service account token is not valid yet")


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
