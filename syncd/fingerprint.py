"""A keyed fingerprint of Secret data: HMAC-SHA256 over an unambiguous encoding.

The fingerprint is stored where many can read it (``status.secretMAC``, a pod-template
annotation). A plain hash of a low-entropy value ("hunter2") can be reversed by guessing, so it
is always keyed; whoever reads the fingerprint without the key learns only whether the data
changed.

The encoding is length-prefixed, so no two different data maps encode to the same bytes
(``{"a": "bc"}`` and ``{"ab": "c"}`` differ), and keys are sorted, so dict order does not
matter. A version tag in front lets the encoding change one day without old and new
fingerprints ever comparing equal by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

KEY_BYTES = 32
MIN_KEY_BYTES = 16
_TAG = b"vault-syncd secret data v1\x00"


def new_key() -> bytes:
    """A fresh random fingerprint key."""
    return secrets.token_bytes(KEY_BYTES)


def fingerprint(*, key: bytes, data: Mapping[str, bytes]) -> str:
    """The hex HMAC-SHA256 of ``data`` under ``key``."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the fingerprint key must be at least {MIN_KEY_BYTES} bytes")
    mac = hmac.new(key, _TAG, hashlib.sha256)
    mac.update(len(data).to_bytes(8, "big"))
    for name in sorted(data, key=str.encode):
        value = data[name]
        if not isinstance(value, bytes):
            # Never show the value: say only what the caller passed.
            raise TypeError(f"Secret data value of key {name!r} must be bytes, "
                            f"not {type(value).__name__}")
        encoded = name.encode()
        mac.update(len(encoded).to_bytes(8, "big"))
        mac.update(encoded)
        mac.update(len(value).to_bytes(8, "big"))
        mac.update(value)
    return mac.hexdigest()
