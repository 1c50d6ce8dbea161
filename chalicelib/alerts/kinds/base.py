"""A channel kind is a plugin: a config model, a pure message builder, a sender — and a registry entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from chalicelib.alerts.http import Response, redact
from chalicelib.alerts.notification import Notification
from chalicelib.masking import MASK
from chalicelib.schema import Schema

SUPPRESSED = "suppressed (every address bounced or complained)"


@dataclass(frozen=True)
class Sent:
    """The outcome of one attempt.  ``retryable``: worth trying again later (5xx, 408, 429, network)."""

    ok: bool
    status: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    excerpt: str | None = None
    retry_after: str | None = None
    gone: bool = False  # 410: the receiver says this endpoint is gone for good
    reached: tuple[str, ...] = ()  # recipients this attempt reached (a retry sends only to the others)

    @property
    def retryable(self) -> bool:
        if self.ok or self.gone:
            return False
        if self.status is None:
            return self.error not in ("destination_not_allowed", SUPPRESSED)
        return self.status >= 500 or self.status in (408, 429)

    @classmethod
    def to_each(cls, recipients: list[str], send_one: Callable[[str], object], service: str) -> Sent:
        """Send to every recipient (email addresses, phone numbers): the ones reached are recorded, so a retry
        sends only to the others; the first failure names the attempt's error."""
        failed, reached = [], []
        for recipient in recipients:
            try:
                send_one(recipient)
                reached.append(recipient)
            except Exception as exc:  # noqa: BLE001 - recorded on the delivery; the retry skips those reached
                failed.append(type(exc).__name__)
        if failed:
            return cls(ok=False, error=f"{service}_error ({failed[0]})", reached=tuple(reached))
        return cls(ok=True, reached=tuple(reached))

    @classmethod
    def from_response(cls, response: Response) -> Sent:
        return cls(
            ok=response.ok,
            status=response.status,
            latency_ms=response.latency_ms,
            error=None if response.ok else (f"http_{response.status}" if response.status else response.error),
            excerpt=response.excerpt,
            retry_after=response.retry_after,
            gone=response.status == 410,
        )


class Kind:
    name: ClassVar[str]
    config_model: ClassVar[type[Schema]]
    groupable: ClassVar[bool] = True  # people read it: many monitors down together make one message
    payload_types: ClassVar[tuple[str, ...] | None] = None  # None: every type

    def supports(self, payload_type: str) -> bool:
        return self.payload_types is None or payload_type in self.payload_types or payload_type == "test"

    def prepare(self, config: dict[str, Any], current: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validated config → (what to store, what to show once).  ``current`` is the stored config on update."""
        return config, {}

    def masked(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config as those who may change the channel read it (and send back: a masked value keeps the stored
        one)."""
        return dict(config)

    def masked_for_readers(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config as those who may not change the channel read it: no less masked than :meth:`masked`."""
        return self.masked(config)

    def remaining(self, config: dict[str, Any], reached: list[str]) -> dict[str, Any]:
        """The config for a retry: kinds with many recipients leave out those already reached."""
        return config

    def secrets(self, config: dict[str, Any]) -> list[str]:
        return []

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> Any:
        raise NotImplementedError

    def send(self, message: Any, config: dict[str, Any], delivery_id: str, now: datetime) -> Sent:
        raise NotImplementedError

    def excerpt(self, text: str | None, config: dict[str, Any]) -> str | None:
        return redact(text, self.secrets(config))


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/XYZ`` → ``https://hooks.slack.com/services/********``: a URL that
    is itself the credential shows its host and first path segment only."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    first = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else ""
    return f"{parts.scheme}://{parts.netloc}/{first + '/' if first else ''}{MASK}"
