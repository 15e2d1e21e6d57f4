"""Vault's error responses: a status code and ``{"errors": [...]}``.

Handlers raise :class:`VaultError`; the server turns it into the wire form. The messages are
Vault's own (reference §1.1) because clients and the services under test match on them.
"""

from __future__ import annotations

from typing import Any

PERMISSION_DENIED = "permission denied"
INVALID_TOKEN = "invalid token"
SEALED = "Vault is sealed"
UNSUPPORTED_OPERATION = "1 error occurred:\n\t* unsupported operation\n\n"


class VaultError(Exception):
    """An error response: ``status`` with ``errors`` as the body (or ``body`` verbatim)."""

    def __init__(self, status: int, *errors: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {'; '.join(errors)}")
        self.status = status
        self.errors = list(errors)
        self.body = body

    def to_body(self) -> dict[str, Any]:
        return self.body if self.body is not None else {"errors": self.errors}


def permission_denied() -> VaultError:
    return VaultError(403, PERMISSION_DENIED)


def invalid_token() -> VaultError:
    # Documented since 2024 (vault PR #26687): both messages for a revoked/expired/unknown token.
    return VaultError(403, PERMISSION_DENIED, INVALID_TOKEN)


def sealed() -> VaultError:
    return VaultError(503, SEALED)


def bad_request(message: str) -> VaultError:
    return VaultError(400, message)


def unsupported_operation() -> VaultError:
    return VaultError(405, UNSUPPORTED_OPERATION)


def no_handler(path: str) -> VaultError:
    return VaultError(404, f'no handler for route "{path}". route entry not found.')
