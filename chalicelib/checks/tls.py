"""TLS for the checker: one shared SSLContext per verify mode, certificate expiry, and verification errors.

Building an ``SSLContext`` costs about 20 ms of CPU (it loads the trust store), so
each is built once per process and shared by every check; ``SSLContext`` is safe
to use from many threads.
"""

from __future__ import annotations

import ssl
import threading
from datetime import datetime

from chalicelib.checks import model

_lock = threading.Lock()
_contexts: dict[bool, ssl.SSLContext] = {}
_trust_cadata: str | None = None

# OpenSSL X509_V_ERR_* codes, from SSLCertVerificationError.verify_code.
_EXPIRED = 10
_NOT_YET_VALID = 9
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64
_SELF_SIGNED = (18, 19)
_UNTRUSTED_ISSUER = (2, 20, 21)
_REVOKED = 23


def context(verify: bool) -> ssl.SSLContext:
    """The shared client context: verifying (system trust store) or accepting any certificate."""
    ctx = _contexts.get(verify)
    if ctx is None:
        with _lock:
            ctx = _contexts.get(verify)
            if ctx is None:
                ctx = _contexts[verify] = _build(verify, _trust_cadata)
    return ctx


def _build(verify: bool, cadata: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=cadata) if verify else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def use_trust_store(cadata: str | None) -> None:
    """Trust only the CA certificates in ``cadata`` (PEM), or the system store again when None.

    The seam for tests (a trustme CA) and for a private deployment with its own CA.
    """
    global _trust_cadata
    with _lock:
        _trust_cadata = cadata
        _contexts.clear()


def expires_at(sock: ssl.SSLSocket) -> datetime | None:
    """The peer certificate's notAfter, verified or not.

    Read from the DER form: it is there even when verification is off (``getpeercert()``
    is then empty), and parsing it is several times cheaper than the decoded dictionary.
    """
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    # Imported on first use: it costs ~70 ms, which a process that never checks HTTPS should not pay.
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:
        return None


def verification_error(exc: ssl.SSLCertVerificationError) -> tuple[str, str]:
    """The error code and a fixed human explanation (OpenSSL's own text can name an address)."""
    code = exc.verify_code
    if code == _EXPIRED:
        return model.CERTIFICATE_EXPIRED, "the server's certificate has expired"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        return model.CERTIFICATE_INVALID, "wrong host: the certificate is not valid for this host name"
    if code in _SELF_SIGNED:
        return model.CERTIFICATE_INVALID, "untrusted: the certificate is self-signed"
    if code in _UNTRUSTED_ISSUER:
        return model.CERTIFICATE_INVALID, "untrusted: the certificate's issuer is not a trusted authority"
    if code == _NOT_YET_VALID:
        return model.CERTIFICATE_INVALID, "not yet valid: the certificate's validity starts in the future"
    if code == _REVOKED:
        return model.CERTIFICATE_INVALID, "revoked: the certificate has been revoked"
    return model.CERTIFICATE_INVALID, f"the certificate did not verify (OpenSSL error {code})"


def handshake_error(exc: ssl.SSLError) -> str:
    """A short, address-free description of a failed handshake, from OpenSSL's reason code."""
    reason = (exc.reason or "").replace("_", " ").lower()
    return f"TLS handshake failed: {reason}" if reason else "TLS handshake failed"
