"""Unseal shares as values that cannot leak by accident, and the checks made on them.

A share is a third of a key to everything in Vault; the design goal here is that the only way
to see its bytes is to ask for them on purpose. So :class:`Share` keeps the bytes in a
``bytearray`` that :meth:`~SecretBytes.wipe` zeroes (a ``with`` block wipes on exit), its
``repr``/``str`` show where it came from and never what it is, it refuses to be pickled, and the
text forms (:meth:`Share.hex`, :meth:`Share.base64`) exist only to be sent to ``sys/unseal`` or
written to a custodian.

What CPython cannot promise: immutable ``str``/``bytes`` copies made on the way in (a JSON
body, a Kubernetes API reply, an environment variable) or out (the text form sent to Vault) are
freed, not zeroed. We wipe every buffer we own and keep the immutable copies short-lived.

Parsing follows Vault's ``sys/unseal`` (hex first; base64 when hex fails or decodes to a length
outside 16..33 bytes), so a share that parses here is one Vault accepts. To name a share in a log
line or to compare shares across custodians use :meth:`Share.fingerprint`, a keyed HMAC: a plain
hash of a 1-of-1 "share" would be a hash of the root key itself.
"""

from __future__ import annotations

import hmac
import itertools
import math
import random
import re
import secrets
from base64 import b64encode
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from types import TracebackType
from typing import NoReturn, Self

import pyshamir

MIN_SHARE_BYTES = 16
MAX_SHARE_BYTES = 33

_HEX = re.compile(r"[0-9a-fA-F]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {char: value for value, char in enumerate(_B64_ALPHABET)}


class ShareError(ValueError):
    """Text that is not a share Vault would accept. The message never quotes the text."""


class SecretBytes:
    """Secret bytes in a buffer we can zero: wiped by :meth:`wipe` or on leaving ``with``."""

    __slots__ = ("_buffer", "_wiped", "origin")

    def __init__(self, material: bytes | bytearray | memoryview, *, origin: str = "") -> None:
        #: Where the bytes came from (``custodian/slot``); never secret, shown in ``repr``.
        self.origin = origin
        self._buffer = bytearray(material)
        self._wiped = False

    def wipe(self) -> None:
        """Overwrite the bytes with zeros; the object is unusable afterwards."""
        zero(self._buffer)
        self._wiped = True

    @property
    def wiped(self) -> bool:
        return self._wiped

    def __len__(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()

    def __repr__(self) -> str:
        origin = f" from {self.origin}" if self.origin else ""
        state = " (wiped)" if self._wiped else ""
        return f"<{type(self).__name__}{origin}{state}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self._view(), other._view())

    __hash__ = None  # type: ignore[assignment]  # equal by content, which must not be hashed

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled or copied")

    def _view(self) -> bytearray:
        # The live buffer, for this package's own use (combine, encrypt, compare). Never return
        # it from a public method: a caller holding it could outlive the wipe.
        if self._wiped:
            raise ValueError(f"{self!r} was wiped")
        return self._buffer


class FingerprintKey:
    """The key of share fingerprints (HMAC-SHA256).

    A random key per process is enough to dedupe and to compare custodians inside that process.
    Fingerprints in logs of different processes (a peer's release log and ours) only match when
    both were given the same key.
    """

    __slots__ = ("_key",)
    MIN_BYTES = 16

    def __init__(self, key: bytes) -> None:
        if len(key) < self.MIN_BYTES:
            raise ValueError(f"a fingerprint key needs at least {self.MIN_BYTES} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> FingerprintKey:
        return cls(secrets.token_bytes(32))

    def digest(self, material: bytes | bytearray) -> str:
        """Short hex HMAC (64 bits: plenty to tell a handful of shares apart)."""
        return hmac.new(self._key, material, sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return "<FingerprintKey>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("FingerprintKey cannot be pickled or copied")


class Share(SecretBytes):
    """One Vault unseal share: ``y_1..y_L || x`` (33 bytes for Vault's 32-byte key), or for a
    1-of-1 seal the raw 32-byte key."""

    __slots__ = ()

    def __init__(self, material: bytes | bytearray | memoryview, *, origin: str = "") -> None:
        if not MIN_SHARE_BYTES <= len(material) <= MAX_SHARE_BYTES:
            raise ShareError(
                f"a share is {MIN_SHARE_BYTES} to {MAX_SHARE_BYTES} bytes, not {len(material)}"
            )
        super().__init__(material, origin=origin)

    @classmethod
    def parse(cls, text: str | bytes | bytearray, *, origin: str = "") -> Share:
        """Parse a share the way ``sys/unseal`` does: hex, else standard (padded) base64.

        Surrounding whitespace is ignored. A ``bytearray`` argument is left for the caller to
        wipe; the decoded intermediate buffers are wiped here.
        """
        where = f" ({origin})" if origin else ""
        if isinstance(text, bytes | bytearray):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                raise ShareError(f"share{where} is not ASCII text") from None
        text = text.strip()
        if not text:
            raise ShareError(f"share{where} is empty")
        decoded = _decode_hex(text)
        if decoded is None or not MIN_SHARE_BYTES <= len(decoded) <= MAX_SHARE_BYTES:
            if decoded is not None:
                zero(decoded)
            decoded = _decode_base64(text)
        if decoded is None:
            raise ShareError(f"share{where} is not valid hex or base64")
        try:
            if not MIN_SHARE_BYTES <= len(decoded) <= MAX_SHARE_BYTES:
                raise ShareError(
                    f"share{where} decodes to {len(decoded)} bytes; Vault accepts "
                    f"{MIN_SHARE_BYTES} to {MAX_SHARE_BYTES}"
                )
            return cls(decoded, origin=origin)
        finally:
            zero(decoded)

    def hex(self) -> str:
        """Lowercase hex, as Vault prints ``keys``; for submission or storage only."""
        return self._view().hex()

    def base64(self) -> str:
        """Standard padded base64, as Vault prints ``keys_base64``; for submission or storage."""
        return b64encode(self._view()).decode("ascii")

    def fingerprint(self, key: FingerprintKey) -> str:
        return key.digest(self._view())


def wipe_all(items: Sequence[SecretBytes]) -> None:
    """Wipe every item; for the shares a function made and will not hand out after all."""
    for item in items:
        item.wipe()


# --- consistency ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consistency:
    """Which shares agree on one secret. Names are the shares' ``origin`` (or ``#index``)."""

    consistent: tuple[str, ...]
    #: Outside the agreeing majority: corrupt, or from another Vault.
    inconsistent: tuple[str, ...]
    #: Too few shares, or no clear majority, to say either way.
    undetermined: tuple[str, ...]
    #: Different subsets gave different secrets: something is wrong, even if undetermined.
    disagreement: bool
    #: Combines run: the vote (at most ``max_subsets``), then one per share outside it.
    subsets_tried: int

    @property
    def conclusive(self) -> bool:
        return not self.undetermined


def check_consistency(
    shares: Sequence[Share], *, threshold: int, max_subsets: int = 64, seed: int | None = None
) -> Consistency:
    """Combine threshold-sized subsets and find the shares outside the agreeing majority.

    Vault only notices a wrong share when the threshold is reached, and then throws the whole
    attempt away; this finds *which* share is wrong before it costs an attempt. Locating one bad
    share takes ``threshold + 2`` distinct shares (``threshold + 1`` only detects it). The
    secrets combined along the way are wiped once compared.

    The majority secret must be backed by at least two subsets and no tie. Every share outside
    the subsets that backed it is then tried once more, with ``threshold - 1`` agreeing shares.

    CPU-bound (pure-Python combine, ~25 ms each at threshold 4): from the event loop, call it
    through ``asyncio.to_thread``. At most ``max_subsets`` subsets vote, sampled at random when
    there are more (``seed`` makes the sample repeatable).
    """
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    # Byte-identical shares are one point: dedupe, then report every name of a point.
    points: list[Share] = []
    names_of: list[list[str]] = []
    for index, share in enumerate(shares):
        name = share.origin or f"#{index}"
        for point_index, point in enumerate(points):
            if point == share:
                names_of[point_index].append(name)
                break
        else:
            points.append(share)
            names_of.append([name])
    every_name = tuple(name for group in names_of for name in group)

    def verdict(agreeing: set[int], *, disagreement: bool, tried: int) -> Consistency:
        return Consistency(
            consistent=tuple(n for i, group in enumerate(names_of) if i in agreeing for n in group),
            inconsistent=tuple(
                n for i, group in enumerate(names_of) if i not in agreeing for n in group
            ),
            undetermined=(),
            disagreement=disagreement,
            subsets_tried=tried,
        )

    if threshold == 1:
        # A 1-of-1 "share" is the key itself: copies agree when they are identical.
        ranked = sorted(range(len(points)), key=lambda i: len(names_of[i]), reverse=True)
        best = len(names_of[ranked[0]]) if ranked else 0
        runner_up = len(names_of[ranked[1]]) if len(ranked) > 1 else 0
        if best < 2 or best == runner_up:
            return Consistency((), (), every_name, len(points) > 1, 0)
        return verdict({ranked[0]}, disagreement=len(points) > 1, tried=0)

    if len(points) <= threshold:
        return Consistency((), (), every_name, False, 0)

    witness = FingerprintKey.generate()  # compare combined secrets by keyed digest only
    support: dict[str, int] = {}
    members: dict[str, set[int]] = {}
    tried = failed = 0
    for subset in _subsets(len(points), threshold, max_subsets, seed):
        tried += 1
        digest = _combined_digest([points[i] for i in subset], witness)
        if digest is None:
            failed += 1  # a duplicate x byte or unequal lengths: agrees with nothing
            continue
        support[digest] = support.get(digest, 0) + 1
        members.setdefault(digest, set()).update(subset)
    ranked_digests = sorted(support, key=support.__getitem__, reverse=True)
    disagreement = len(support) > 1 or failed > 0
    best = support[ranked_digests[0]] if ranked_digests else 0
    runner_up = support[ranked_digests[1]] if len(ranked_digests) > 1 else 0
    if best < 2 or best == runner_up:
        return Consistency((), (), every_name, disagreement, tried)

    majority = ranked_digests[0]
    agreeing = set(members[majority])
    basis = [points[i] for i in sorted(agreeing)[: threshold - 1]]
    for index, point in enumerate(points):
        if index not in agreeing:
            tried += 1
            if _combined_digest([*basis, point], witness) == majority:
                agreeing.add(index)
    return verdict(agreeing, disagreement=disagreement, tried=tried)


def _combined_digest(parts: Sequence[Share], witness: FingerprintKey) -> str | None:
    try:
        secret = pyshamir.combine([part._view() for part in parts])
    except (ValueError, ZeroDivisionError):
        return None
    try:
        return witness.digest(secret)
    finally:
        zero(secret)


def _subsets(
    count: int, size: int, limit: int, seed: int | None
) -> Iterator[tuple[int, ...]]:
    if math.comb(count, size) <= limit:
        yield from itertools.combinations(range(count), size)
        return
    # Enumerating in order would put the first share in every early subset and bias the vote.
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < limit:
        subset = tuple(sorted(rng.sample(range(count), size)))
        if subset not in seen:
            seen.add(subset)
            yield subset


# --- decoding into wipeable buffers -----------------------------------------------------------


def zero(buffer: bytearray) -> None:
    """Overwrite a buffer with zeros (for the callers' own decoded or encoded copies)."""
    for index in range(len(buffer)):
        buffer[index] = 0


def _decode_hex(text: str) -> bytearray | None:
    # Go's hex.DecodeString: even length, hex digits only (bytearray.fromhex would also skip
    # spaces, which Vault does not).
    if len(text) % 2 or not _HEX.fullmatch(text):
        return None
    return bytearray.fromhex(text)


def _decode_base64(text: str) -> bytearray | None:
    # Go's base64.StdEncoding: padded, standard alphabet. Decoded by hand so that the result
    # lands in a buffer we can wipe rather than in an immutable ``bytes``.
    if len(text) % 4 or not _BASE64.fullmatch(text):
        return None
    body = text.rstrip("=")
    out = bytearray()
    accumulator = 0
    bits = 0
    for char in body.encode("ascii"):
        accumulator = ((accumulator << 6) | _B64_VALUE[char]) & 0xFFFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((accumulator >> bits) & 0xFF)
    # Like Go's default (non-strict) decoder, stray bits in the last character are ignored.
    return out
