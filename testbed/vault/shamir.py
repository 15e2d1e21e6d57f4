"""Shamir secret sharing over GF(2^8), byte-compatible with Vault's unseal key shares.

The unsealer under test hands real share bytes to ``sys/unseal``, so the emulation must produce
and accept exactly what Vault does (reference §2): the AES field (polynomial 0x11B), one random
polynomial of degree ``threshold - 1`` per secret byte, each share laid out as ``y_1 … y_L || x``
with the x coordinate as the *last* byte, and distinct x coordinates drawn at random from 1..255.
The arithmetic uses log/exp tables (as older Vault did; identical results to the constant-time
multiply) because this is a test fixture, not a side-channel-hardened implementation.
"""

from __future__ import annotations

import secrets

__all__ = ["ShamirError", "combine", "split"]

_POLY = 0x11B


class ShamirError(ValueError):
    """A split or combine request Vault's shamir package would refuse; the message is Vault's."""


def _tables() -> tuple[list[int], list[int]]:
    # 3 generates the multiplicative group of GF(2^8) under 0x11B.
    exp = [0] * 510
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        doubled = value << 1
        if doubled & 0x100:
            doubled ^= _POLY
        value ^= doubled  # value * 3 = value * 2 + value
    for power in range(255, 510):
        exp[power] = exp[power - 255]
    return exp, log


_EXP, _LOG = _tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("divide by zero")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def _evaluate(coefficients: bytes, x: int) -> int:
    """Horner's rule; ``coefficients[0]`` is the intercept."""
    result = 0
    for coefficient in reversed(coefficients):
        result = _mul(result, x) ^ coefficient
    return result


def split(secret: bytes, *, parts: int, threshold: int) -> list[bytes]:
    """Split ``secret`` into ``parts`` shares of ``len(secret) + 1`` bytes, ``threshold`` needed."""
    if parts < threshold:
        raise ShamirError("parts cannot be less than threshold")
    if parts > 255:
        raise ShamirError("parts cannot exceed 255")
    if threshold < 2:
        raise ShamirError("threshold must be at least 2")
    if threshold > 255:
        raise ShamirError("threshold cannot exceed 255")
    if not secret:
        raise ShamirError("cannot split an empty secret")
    # Distinct, never-zero x coordinates: a crypto-random permutation of 1..255.
    xs = list(range(1, 256))
    secrets.SystemRandom().shuffle(xs)
    xs = xs[:parts]
    shares = [bytearray(len(secret) + 1) for _ in range(parts)]
    for share, x in zip(shares, xs, strict=True):
        share[-1] = x
    for index, byte in enumerate(secret):
        coefficients = bytes([byte]) + secrets.token_bytes(threshold - 1)
        for share, x in zip(shares, xs, strict=True):
            share[index] = _evaluate(coefficients, x)
    return [bytes(share) for share in shares]


def combine(parts: list[bytes]) -> bytes:
    """Reconstruct the secret from ``parts`` by Lagrange interpolation at x = 0."""
    if len(parts) < 2:
        raise ShamirError("less than two parts cannot be used to reconstruct the secret")
    length = len(parts[0])
    if length < 2:
        raise ShamirError("parts must be at least two bytes")
    if any(len(part) != length for part in parts):
        raise ShamirError("all parts must be the same length")
    xs = [part[-1] for part in parts]
    if len(set(xs)) != len(xs):
        raise ShamirError("duplicate part detected")
    # The Lagrange basis at 0 depends only on the x coordinates: compute it once.
    basis: list[int] = []
    for i, xi in enumerate(xs):
        weight = 1
        for j, xj in enumerate(xs):
            if i != j:
                weight = _mul(weight, _div(xj, xi ^ xj))
        basis.append(weight)
    secret = bytearray(length - 1)
    for index in range(length - 1):
        value = 0
        for part, weight in zip(parts, basis, strict=True):
            value ^= _mul(part[index], weight)
        secret[index] = value
    return bytes(secret)
