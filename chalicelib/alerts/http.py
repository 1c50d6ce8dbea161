"""Outbound HTTP for alert channels: the checker's own client, so the same SSRF guard holds at every send
(the address is resolved, checked and pinned; redirects are not followed: a 3xx is a failure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chalicelib.checks import model as check
from chalicelib.checks.http import run_check
from chalicelib.masking import REDACTED, without_secrets
from chalicelib.settings import get_settings

TIMEOUT_MS = 10_000
EXCERPT_BYTES = 1024
# Things in a response that look like credentials, whoever sent them back.
_SECRETISH = re.compile(
    r"(?i)(bearer\s+|token[\"'=:\s]+|secret[\"'=:\s]+|key[\"'=:\s]+|password[\"'=:\s]+|whsec_)[A-Za-z0-9._~+/=-]{6,}"
)


@dataclass(frozen=True)
class Response:
    """What one attempt got: ``status`` is None when no response came (``error`` says why)."""

    status: int | None
    latency_ms: float
    error: str | None  # an error class: timeout, connection_refused, status_mismatch, destination_not_allowed, …
    excerpt: str | None
    retry_after: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def redact(text: str | None, secrets: list[str]) -> str | None:
    """At most 1 KB, with the channel's own secrets — as sent, JSON-escaped or percent-encoded — and anything
    credential-like replaced.  The excerpt is cut at 1 KB before it gets here: a secret's beginning at its very
    end (the rest cut off) is replaced too."""
    if text is None:
        return None
    text = _SECRETISH.sub(lambda m: m.group(1) + REDACTED, without_secrets(text, secrets))
    return text.encode()[:EXCERPT_BYTES].decode("utf-8", "ignore")


def post(url: str, body: bytes, headers: dict[str, str], secrets: list[str]) -> Response:
    spec = check.CheckSpec(
        url=url,
        method="POST",
        headers=tuple({"Content-Type": "application/json", "User-Agent": "Vigil-Alerts/1", **headers}.items()),
        body=body.decode("utf-8"),
        timeout_ms=TIMEOUT_MS,
        expected_status=("2xx",),
        follow_redirects=False,
        verify_ssl=True,
        connect_timeout_ms=5000,
    )
    result = run_check(spec, region="alerts", allow_private=get_settings().allow_private_targets)
    headers_in = dict(result.response_headers)
    return Response(
        status=result.status_code,
        latency_ms=round(result.timings.total_ms, 1),
        error=None if result.ok else (result.error or "failed"),
        excerpt=redact(result.body_excerpt, secrets),
        retry_after=headers_in.get("retry-after"),
    )
