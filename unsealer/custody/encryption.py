"""Age encryption of stored shares, with the identity held by a *different* custodian.

Encrypting a custodian's shares only helps if the key that decrypts them is not beside them.
So an encrypted custodian names a recipient (``encryptedFor: age1...``) and another custodian
that holds the matching identity (``identityFrom: <name>``); the invariant then counts the two
together (:mod:`.invariant`). Stealing the ciphertext alone, or the identity alone, yields
nothing.

Each share is encrypted on its own (so a custodian's entries stay one-per-share), as standard
age (X25519) that the ``age``/``rage`` tools can read. Entries are stored as one line of base64
of the binary age file, which fits every backend (a Secret value, a line of a file, a word of an
environment variable); binary age files are accepted too.

pyrage takes and returns immutable ``bytes``: the plaintext copies it makes cannot be wiped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import pyrage

from unsealer.custody.custodian import Backend, CustodyError, Entry
from unsealer.shares import Share, ShareError, wipe_all, zero

_AGE_MAGIC = b"age-encryption.org/"


def parse_recipient(text: str) -> pyrage.x25519.Recipient:
    """An X25519 age recipient (``age1...``); ``ValueError`` if it is not one."""
    try:
        return pyrage.x25519.Recipient.from_str(text.strip())
    except (pyrage.RecipientError, ValueError) as exc:
        raise ValueError("not an age X25519 recipient (age1...)") from exc


class AgeSealer:
    """Encrypts shares to ``recipient``; decrypts with the identity ``holder`` holds."""

    def __init__(self, *, recipient: str, identity_from: str, holder: Backend) -> None:
        self.recipient = recipient
        self.identity_from = identity_from
        self._recipient = parse_recipient(recipient)
        self._holder = holder

    def seal(self, share: Share) -> bytearray:
        ciphertext = pyrage.encrypt(share.base64().encode("ascii"), [self._recipient])
        return bytearray(base64.b64encode(ciphertext))

    async def open(self, entries: Sequence[Entry], *, custodian: str) -> list[Share]:
        if not entries:
            return []
        identity = await self._identity(custodian=custodian)
        shares: list[Share] = []
        try:
            for slot, entry in entries:
                shares.append(self._open_one(slot, entry, identity, custodian=custodian))
        except CustodyError:
            wipe_all(shares)
            raise
        return shares

    def _open_one(
        self, slot: str, entry: bytearray, identity: pyrage.x25519.Identity, *, custodian: str
    ) -> Share:
        if entry.startswith(_AGE_MAGIC):
            ciphertext = bytes(entry)
        else:
            try:
                ciphertext = base64.b64decode(bytes(entry).strip(), validate=True)
            except (binascii.Error, ValueError):
                raise CustodyError(
                    f"entry {slot} is not age ciphertext (expected base64 of an age file)",
                    custodian=custodian,
                ) from None
        try:
            plaintext = pyrage.decrypt(ciphertext, [identity])
        except pyrage.DecryptError:
            raise CustodyError(
                f"entry {slot} does not decrypt with the identity held by {self.identity_from!r}",
                custodian=custodian,
            ) from None
        buffer = bytearray(plaintext)
        try:
            return Share.parse(buffer, origin=f"{custodian}/{slot}")
        except ShareError as exc:
            raise CustodyError(f"entry {slot} decrypts to {exc}", custodian=custodian) from None
        finally:
            zero(buffer)

    async def _identity(self, *, custodian: str) -> pyrage.x25519.Identity:
        try:
            text = await self._holder.read_identity()
        except CustodyError as exc:
            raise CustodyError(
                f"cannot get the age identity from {self.identity_from!r}: {exc}",
                custodian=custodian,
            ) from None
        if text is None:
            raise CustodyError(
                f"custodian {self.identity_from!r} holds no age identity", custodian=custodian
            )
        try:
            identity = pyrage.x25519.Identity.from_str(bytes(text).decode("ascii").strip())
        except (pyrage.IdentityError, ValueError, UnicodeDecodeError):
            raise CustodyError(
                f"the identity held by {self.identity_from!r} is not an age X25519 identity",
                custodian=custodian,
            ) from None
        finally:
            zero(text)
        if str(identity.to_public()) != str(self._recipient):
            raise CustodyError(
                f"the identity held by {self.identity_from!r} is not the one for "
                f"recipient {self.recipient}",
                custodian=custodian,
            )
        return identity
