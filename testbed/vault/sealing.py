"""The barrier: the key-encryption key that unseal shares rebuild, and the root key it guards.

At init, Vault generates a root key (the keyring that encrypts storage) and encrypts it with a
32-byte key-encryption key (KEK); the KEK, not the root key, is Shamir-split into the unseal
shares (raw for a 1-of-1 seal). Unseal succeeds only if the combined shares decrypt the stored
root key, and AES-GCM authentication is what tells a wrong share set from the right one
(reference §1.4 step 9). The emulation does exactly that, so a wrong set fails the same way.
"""

from __future__ import annotations

import base64
import os
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from testbed.vault import shamir

_AAD = b"testbed-vault/keyring"


@dataclass
class SealConfig:
    """What storage holds about the seal: the share layout and the encrypted root key."""

    secret_shares: int
    secret_threshold: int
    keyring: str  # base64(nonce || AES-GCM(KEK, root key))

    def to_state(self) -> dict[str, object]:
        return asdict(self)


class KeyringError(Exception):
    """The combined key could not decrypt the stored root key; the message is Go's wording."""


def create(*, shares: int, threshold: int) -> tuple[SealConfig, list[bytes]]:
    """A new root key sealed under a new KEK, and the KEK's unseal shares."""
    kek = os.urandom(32)
    root_key = os.urandom(32)
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(kek).encrypt(nonce, root_key, _AAD)
    config = SealConfig(
        secret_shares=shares,
        secret_threshold=threshold,
        keyring=base64.b64encode(sealed).decode(),
    )
    keys = [kek] if shares == 1 else shamir.split(kek, parts=shares, threshold=threshold)
    return config, keys


def open_keyring(config: SealConfig, kek: bytes) -> bytes:
    """The root key, or :class:`KeyringError` when ``kek`` is not the key it was sealed under."""
    if len(kek) not in (16, 24, 32):
        raise KeyringError(f"crypto/aes: invalid key size {len(kek)}")
    blob = base64.b64decode(config.keyring)
    try:
        return AESGCM(kek).decrypt(blob[:12], blob[12:], _AAD)
    except InvalidTag:
        raise KeyringError("cipher: message authentication failed") from None
