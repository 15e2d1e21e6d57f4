"""TLS material loaded with errors that say which material is wrong, and how; never its bytes.

OpenSSL reports a truncated certificate, a key where a certificate goes and a bundle cut in its
second certificate alike, as ``[SSL] PEM lib (_ssl.c:3905)``: it names neither the file nor the
problem. Every place that loads a CA bundle, a certificate or a private key (a VaultConnection's
``caCertSecretRef`` and ``caCertPath``, ``--ca-file``, the unsealer's peer mTLS files) goes
through here, so a refusal names the material as the user wrote it (``what``: a field, an option,
a file) and says what is wrong in words. The text of the material is never quoted: a key file
holds a private key, and even a certificate bundle is no one's business in a log.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TLSMaterialError(ssl.SSLError):
    """A CA bundle, certificate or key that cannot be used; the message names it.

    An :class:`ssl.SSLError` (so an :class:`OSError`), so that callers that already catch what
    :mod:`ssl` raises keep working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "TLS material cannot be used"


def _problem(exc: OSError, *, kind: str) -> str:
    """What ``exc``, raised loading a ``kind`` ("certificate", "private key"), means."""
    if not isinstance(exc, ssl.SSLError):
        return exc.strerror or type(exc).__name__  # a file that cannot be opened
    reason = getattr(exc, "reason", None) or ""
    if reason == "NO_CERTIFICATE_OR_CRL_FOUND":
        return "holds no PEM certificate (empty, DER, or not a certificate?)"
    if reason == "KEY_VALUES_MISMATCH":
        return "is not the private key of the certificate beside it"
    if kind == "private key":
        return "holds no usable PEM private key (truncated, encrypted, or not a key?)"
    return f"holds PEM that does not parse as a {kind} (truncated or corrupted?)"


def ca_context(
    *, what: str, cafile: str | Path | None = None, cadata: str | None = None,
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
) -> ssl.SSLContext:
    """A default context trusting the CA bundle in ``cafile`` or ``cadata``; a
    :class:`TLSMaterialError` naming ``what`` if it is not one."""
    try:
        return ssl.create_default_context(
            purpose, cafile=str(cafile) if cafile is not None else None, cadata=cadata)
    except (OSError, ValueError) as exc:
        problem = _problem(exc, kind="certificate") if isinstance(exc, OSError) else (
            "holds no PEM certificate (empty, DER, or not a certificate?)")
        raise TLSMaterialError(f"{what}: {problem}") from None


def load_cert_chain(
    context: ssl.SSLContext, *, cert_file: str | Path, key_file: str | Path,
    cert_what: str, key_what: str,
) -> None:
    """``context`` presenting the certificate in ``cert_file`` with the key in ``key_file``; a
    :class:`TLSMaterialError` naming the one at fault."""
    try:
        # The certificate alone first: load_cert_chain says the same words for either file.
        ssl.create_default_context(cafile=str(cert_file))
    except OSError as exc:
        raise TLSMaterialError(f"{cert_what}: {_problem(exc, kind='certificate')}") from None
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except OSError as exc:
        raise TLSMaterialError(f"{key_what}: {_problem(exc, kind='private key')}") from None
