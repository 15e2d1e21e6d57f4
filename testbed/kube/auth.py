"""Authentication and the auth APIs: tokens, impersonation, TokenRequest/Review, access reviews.

The plain-http listener treats a request without credentials as the cluster admin, because
kubectl never sends credentials over http (clientcmd only loads user auth for TLS); the
kubeconfig's admin token is the admin too. A ServiceAccount JWT authenticates as that service
account, whose requests RBAC then authorises; anything else is 401. Admins may impersonate
(``Impersonate-User``/``Impersonate-Group``), which is how ``kubectl --as=...`` is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from testbed.kube import errors, validation
from testbed.kube.meta import Obj
from testbed.kube.rbac import Attributes, Authorizer
from testbed.kube.registry import Registry
from testbed.kube.tokens import (
    ADMIN,
    DEFAULT_AUDIENCES,
    Signer,
    TokenError,
    User,
    service_account_user,
    token_request_response,
)

POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


@dataclass
class Authenticator:
    registry: Registry
    signer: Signer
    admin_token: str
    static: dict[str, User] = field(default_factory=dict)

    def review(self, token: str, audiences: list[str] | None = None) -> tuple[User, list[str]]:
        """Return the token's user and the audiences it is valid for, or raise TokenError."""
        if token == self.admin_token:
            return ADMIN, list(audiences or DEFAULT_AUDIENCES)
        if token in self.static:
            return self.static[token], list(audiences or DEFAULT_AUDIENCES)
        if token.count(".") != 2:
            raise TokenError("token lookup failed")
        claims = self.signer.verify(token)
        token_aud = claims.get("aud") or []
        if isinstance(token_aud, str):
            token_aud = [token_aud]
        wanted = list(audiences or DEFAULT_AUDIENCES)
        matched = [a for a in wanted if a in token_aud]
        if not matched:
            raise TokenError(
                "token audiences "
                + _go_list(token_aud)
                + " is invalid for the target audiences "
                + _go_list(wanted)
            )
        self.signer.check_times(claims)
        k8s = claims.get("kubernetes.io") or {}
        namespace = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        stored = self.registry.store.get("/serviceaccounts", namespace, sa.get("name", ""))
        if stored is None:
            raise TokenError(f'serviceaccounts "{sa.get("name")}" not found')
        if stored["metadata"].get("uid") != sa.get("uid"):
            raise TokenError(
                f"service account UID ({stored['metadata'].get('uid')}) does not match "
                f"claim ({sa.get('uid')})"
            )
        extra: dict[str, list[str]] = {CREDENTIAL_ID: [f"JTI={claims.get('jti', '')}"]}
        pod = k8s.get("pod")
        if pod:
            live = self.registry.store.get("/pods", namespace, pod.get("name", ""))
            if live is None:
                raise TokenError(f'pods "{pod.get("name")}" not found')
            if live["metadata"].get("uid") != pod.get("uid"):
                raise TokenError(
                    f"pod UID ({live['metadata'].get('uid')}) does not match "
                    f"claim ({pod.get('uid')})"
                )
            extra[POD_NAME] = [pod.get("name", "")]
            extra[POD_UID] = [pod.get("uid", "")]
        user = service_account_user(namespace, sa.get("name", ""), sa.get("uid", ""), extra)
        return user, matched

    def authenticate(
        self, authorization: str | None, impersonate_user: str | None, impersonate_groups: list[str]
    ) -> User:
        if not authorization:
            user = ADMIN
        elif authorization.startswith("Bearer "):
            try:
                user, _ = self.review(authorization[len("Bearer ") :].strip())
            except TokenError as exc:
                raise errors.unauthorized() from exc
        else:
            raise errors.unauthorized()
        if impersonate_user:
            if not user.is_admin:
                raise errors.forbidden_error(
                    f'users "{impersonate_user}" is forbidden: User "{user.name}" cannot '
                    'impersonate resource "users" in API group "" at the cluster scope',
                    "",
                    "users",
                    impersonate_user,
                )
            return impersonated(impersonate_user, impersonate_groups)
        return user


def impersonated(name: str, groups: list[str]) -> User:
    if name.startswith("system:serviceaccount:") and not groups:
        _, _, ns, sa = name.split(":", 3)
        return service_account_user(ns, sa)
    all_groups = list(groups)
    if "system:authenticated" not in all_groups and name != "system:anonymous":
        all_groups.append("system:authenticated")
    return User(name, tuple(all_groups))


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def token_review(authn: Authenticator, body: Any) -> Obj:
    """POST tokenreviews: never stored, answered 201 with the status filled in."""
    if not isinstance(body, dict):
        raise errors.bad_request(
            "the object provided is unrecognized (must be of type TokenReview)"
        )
    spec = body.get("spec") or {}
    token = spec.get("token") or ""
    audiences = list(spec.get("audiences") or [])
    out: Obj = {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None, **(body.get("metadata") or {})},
        "spec": spec,
    }
    try:
        user, matched = authn.review(token, audiences or None)
    except TokenError as exc:
        out["status"] = {"user": {}, "error": f"[invalid bearer token, {exc}]"}
        return out
    out["status"] = {
        "authenticated": True,
        "user": user.info(),
        "audiences": matched if audiences else list(DEFAULT_AUDIENCES),
    }
    return out


def token_request(
    authn: Authenticator, namespace: str, name: str, body: Any, *, dry_run: bool = False
) -> Obj:
    """POST serviceaccounts/{name}/token."""
    registry = authn.registry
    sa = registry.store.get("/serviceaccounts", namespace, name)
    if sa is None:
        raise errors.not_found("", "serviceaccounts", name)
    request = body if isinstance(body, dict) else {}
    errs = validation.token_request(request)
    if errs:
        raise errors.invalid("authentication.k8s.io", "TokenRequest", name, errs)
    spec = dict(request.get("spec") or {})
    audiences = list(spec.get("audiences") or DEFAULT_AUDIENCES)
    seconds = int(spec.get("expirationSeconds") or 3600)
    spec["audiences"] = audiences
    spec["expirationSeconds"] = seconds
    spec.setdefault("boundObjectRef", None)
    pod = None
    ref = spec.get("boundObjectRef")
    if ref and ref.get("kind") == "Pod":
        pod = registry.store.get("/pods", namespace, ref.get("name", ""))
        if pod is None:
            raise errors.not_found("", "pods", ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != pod["metadata"].get("uid"):
            raise errors.conflict(
                "",
                "pods",
                ref.get("name", ""),
                f"the UID in the bound object reference ({ref['uid']}) does not "
                f"match the UID in record. The object might have been deleted "
                f"and then recreated",
            )
    token, expires = authn.signer.issue(
        namespace=namespace,
        sa_name=name,
        sa_uid=sa["metadata"].get("uid", ""),
        audiences=audiences,
        seconds=seconds,
        pod=pod,
        node=(pod.get("spec") or {}).get("nodeName", "") if pod else "",
    )
    request = {
        **request,
        "spec": spec,
        "metadata": {"name": name, "namespace": namespace, **(request.get("metadata") or {})},
    }
    if dry_run:
        token = ""
    return token_request_response(request, token, expires)


def access_review(authorizer: Authorizer, user: User, body: Any, *, self_review: bool) -> Obj:
    """POST (self)subjectaccessreviews: answer whether the subject may do the described request."""
    if not isinstance(body, dict):
        raise errors.bad_request("the object provided is unrecognized")
    spec = body.get("spec") or {}
    if self_review:
        subject = user
    else:
        name = spec.get("user") or ""
        groups = list(spec.get("groups") or [])
        subject = User(name, tuple(groups), spec.get("uid") or "")
        if name.startswith("system:serviceaccount:") and not groups:
            ns = name.split(":", 3)[2]
            subject = User(
                name,
                ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
            )
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource:
        attrs = Attributes(
            verb=resource.get("verb", ""),
            api_group=resource.get("group", ""),
            resource=resource.get("resource", ""),
            subresource=resource.get("subresource", ""),
            name=resource.get("name", ""),
            namespace=resource.get("namespace", ""),
        )
    elif non_resource:
        attrs = Attributes(
            verb=non_resource.get("verb", ""),
            resource_request=False,
            path=non_resource.get("path", ""),
        )
    else:
        raise errors.invalid(
            "authorization.k8s.io",
            body.get("kind", "SubjectAccessReview"),
            "",
            [
                errors.invalid_value(
                    "spec.resourceAttributes",
                    None,
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
        )
    if subject.is_admin:
        allowed, reason = True, ""
    else:
        allowed, reason = authorizer.allowed(subject, attrs)
    status: Obj = {"allowed": allowed}
    if allowed and not subject.is_admin:
        status["reason"] = "RBAC: allowed by RBAC rules"
    elif reason:
        status["reason"] = reason
    return {
        "kind": body.get("kind")
        or ("SelfSubjectAccessReview" if self_review else "SubjectAccessReview"),
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }
