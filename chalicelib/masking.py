"""What a reader is shown instead of a secret, and how a secret sent back masked keeps its stored value.

Monitors mask credential-like request headers; alert channels mask webhook headers, URL tokens and keys.  Both
read and write the same mask, so a client may send back what it read and keep what is stored.
"""

from __future__ import annotations

MASK = "********"
SENSITIVE_HEADER_WORDS = ("auth", "token", "secret", "key", "cookie", "password", "session", "signature")


class MaskedWithoutValue(ValueError):
    """A value was sent masked where there is no stored value for it to keep."""


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: a stored credential is kept only for the receiver it was given for."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def is_sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_HEADER_WORDS)


def masked_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (MASK if is_sensitive_header(k) else v) for k, v in headers.items()}


def restore_masked(sent: dict[str, str], stored: dict[str, str]) -> dict[str, str]:
    """``sent`` with each value sent back as the mask replaced by the stored value of the same header; a masked
    value with no stored value to keep raises :class:`MaskedWithoutValue` (the mask is never stored)."""
    restored = {k: (stored.get(k, v) if v == MASK else v) for k, v in sent.items()}
    if any(v == MASK for v in restored.values()):
        raise MaskedWithoutValue("a masked value can only keep an existing one")
    return restored
