"""Validation of what a monitor may target and send (used by the API at create and update)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from chalicelib import errors
from chalicelib.settings import get_settings

HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")  # RFC 9110 field-value: visible, space, tab, obs-text
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
MAX_HEADERS = 30
MAX_HEADER_BYTES = 8192


def validate_url(url: str) -> str:
    """Syntax only (http/https, a host, no credentials in the URL); raises ValueError for pydantic."""
    from chalicelib.checks.ssrf import check_url_syntax

    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; send them in a header instead")
    return check_url_syntax(url.strip())


def validate_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    total = 0
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in FORBIDDEN_HEADERS:
            raise ValueError(f"{name} is set by the checker and cannot be overridden")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"the value of {name} contains a line break")
        if not HEADER_VALUE.match(value):
            raise ValueError(f"the value of {name} has characters a header cannot carry (control or non-Latin-1)")
        total += len(name) + len(value)
    if total > MAX_HEADER_BYTES:
        raise ValueError(f"headers total more than {MAX_HEADER_BYTES} bytes")
    return headers


def validate_destination(url: str, field: str = "url") -> None:
    """Refuse a target that resolves to a blocked address (422 ``destination_not_allowed``).

    A name that does not resolve yet is accepted: the check will report ``dns_failure`` until it does.
    """
    from chalicelib.checks import ssrf

    try:
        ssrf.resolve_allowed(url, allow_private=get_settings().allow_private_targets)
    except ssrf.DestinationNotAllowed as exc:
        raise errors.DestinationNotAllowed(field, str(exc)) from None
    except ssrf.DnsFailure:
        return


def validate_host(host: str) -> str:
    """A TCP monitor's host: a name or an IP address (IPv6 with or without brackets), normalized; raises
    ValueError for pydantic."""
    from chalicelib.checks.ssrf import check_host

    return check_host(host)


def validate_host_destination(host: str, port: int | None, field: str = "host") -> None:
    """Refuse a TCP target whose host resolves to a blocked address (422 ``destination_not_allowed``), as
    :func:`validate_destination` does for a URL; a name that does not resolve yet is accepted."""
    from chalicelib.checks import ssrf

    try:
        ssrf.resolve_host(
            host,
            port or 0,
            allow_private=get_settings().allow_private_targets,
            timeout=ssrf.DNS_TIMEOUT_S,
        )
    except ssrf.DestinationNotAllowed as exc:
        raise errors.DestinationNotAllowed(field, str(exc)) from None
    except ssrf.DnsFailure:
        return
