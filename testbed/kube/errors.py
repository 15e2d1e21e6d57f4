"""Kubernetes ``Status`` error bodies, built as apimachinery's ``errors`` package builds them.

Clients branch on ``code``/``reason`` (kubernetes-asyncio surfaces them as ``ApiException``) and
kubectl prints ``message`` verbatim, so these strings are part of the emulated wire contract.
Note the quirk the real server has: ``details.kind`` is the resource *plural* for NotFound,
AlreadyExists and Conflict, but the *Kind* for Invalid (422).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def _quote(value: Any) -> str:
    """Format a value the way Go's field errors do (``%q`` for strings, ``%v`` otherwise)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error`` of a 422 Invalid answer."""

    type: str  # "Invalid", "Required", "Forbidden", "NotSupported", "Duplicate", "TooLong"
    field: str
    detail: str = ""
    value: Any = None
    supported: tuple[str, ...] = ()

    def body(self) -> str:
        if self.type == "Invalid":
            text = f"Invalid value: {_quote(self.value)}"
        elif self.type == "Required":
            text = "Required value"
        elif self.type == "Forbidden":
            text = "Forbidden"
        elif self.type == "NotSupported":
            text = f"Unsupported value: {_quote(self.value)}"
            if self.supported:
                text += ": supported values: " + ", ".join(json.dumps(s) for s in self.supported)
            return text
        elif self.type == "Duplicate":
            text = f"Duplicate value: {_quote(self.value)}"
        elif self.type == "TooLong":
            text = "Too long"
        else:
            text = self.type
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, Any]:
        return {"reason": f"FieldValue{self.type}", "message": self.body(), "field": self.field}


def invalid_value(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", path, detail, value)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail)


def not_supported(path: str, value: Any, supported: tuple[str, ...]) -> FieldError:
    return FieldError("NotSupported", path, "", value, supported)


def too_long(path: str, limit: int) -> FieldError:
    return FieldError("TooLong", path, f"may not be more than {limit} bytes")


@dataclass
class ApiError(Exception):
    """An error answered as a ``Status`` object with an HTTP code."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified(group: str, plural: str) -> str:
    """``secrets`` for the core group, ``deployments.apps`` otherwise (GroupResource.String())."""
    return f"{plural}.{group}" if group else plural


def _details(group: str, plural: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, plural)} "{name}" not found',
        _details(group, plural, name),
    )


def resource_not_found() -> ApiError:
    """An unknown path or resource (the apiserver's NotFound without details)."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(group, plural)} "{name}" already exists',
        _details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}',
        _details(group, plural, name),
    )


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid: one error prints inline, several print as a bracketed list."""
    text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [e.cause() for e in errors]
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {text}'
        if group
        else f'{kind} "{name}" is invalid: {text}',
        details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden_error(message: str, group: str, plural: str, name: str) -> ApiError:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if plural:
        details["kind"] = plural
    return ApiError(403, "Forbidden", message, details)


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        {"Retry-After": str(retry_after)},
    )


def service_unavailable(
    message: str = "the server is currently unable to handle the request",
) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message, {})


def timeout_error(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(504, "Timeout", message, {"retryAfterSeconds": retry_after})
