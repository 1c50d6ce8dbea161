"""Email through SES: plain text and HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, field_validator

from chalicelib.alerts import suppressions
from chalicelib.alerts.kinds.base import SUPPRESSED, Kind, Sent
from chalicelib.alerts.notification import Notification
from chalicelib.aws.mail import send_email
from chalicelib.schema import EmailAddress, Schema

Address = Annotated[EmailAddress, Field(min_length=3, max_length=320)]


class EmailConfig(Schema):
    addresses: list[Address] = Field(min_length=1, max_length=10)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        out = []
        for address in value:
            try:  # the sign-up validator: one address, nothing a mail header would read as two
                out.append(validate_email(address.strip(), check_deliverability=False).normalized.lower())
            except EmailNotValidError as exc:
                raise ValueError(f"{address!r} is not an email address: {exc}") from None
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


def _rows(notification: Notification) -> list[tuple[str, str]]:
    """(label, value) lines describing each monitor in the notification."""
    rows = []
    for item in notification.items:
        incident = item.incident or {}
        parts = [p for p in (incident.get("cause"), ", ".join(incident.get("affected_regions") or [])) if p]
        rows.append((item.monitor["name"], " · ".join(parts) or (item.monitor.get("url") or "")))
    return rows


def render(notification: Notification) -> EmailContent:
    subject = f"[Vigil] {notification.headline()}"
    lines = [notification.headline(), ""]
    for label, value in _rows(notification):
        lines.append(f"- {label}: {value}" if value else f"- {label}")
    update = notification.update or {}
    if update.get("text"):
        lines += ["", str(update["text"])]
    lines += [
        "",
        f"Open in Vigil: {notification.link()}",
        "",
        "You receive this because of your team's alert settings.",
    ]
    items = "".join(
        f"<li><strong>{html.escape(label)}</strong>{': ' + html.escape(value) if value else ''}</li>"
        for label, value in _rows(notification)
    )
    note = f"<p>{html.escape(str(update['text']))}</p>" if update.get("text") else ""
    body = (
        '<!doctype html><html lang="en"><body style="font-family:system-ui,sans-serif;color:#111">'
        f'<h1 style="font-size:18px">{html.escape(notification.headline())}</h1>'
        f"<ul>{items}</ul>{note}"
        f'<p><a href="{html.escape(notification.link())}">Open in Vigil</a></p>'
        '<p style="color:#555;font-size:12px">You receive this because of your team\'s alert settings.</p>'
        "</body></html>"
    )
    return EmailContent(subject, "\n".join(lines) + "\n", body)


class Email(Kind):
    name = "email"
    config_model = EmailConfig

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> EmailContent:
        return render(notification)

    def remaining(self, config: dict[str, Any], reached: list[str]) -> dict[str, Any]:
        return {**config, "addresses": [a for a in config["addresses"] if a not in reached]}

    def send(self, message: EmailContent, config: dict[str, Any], delivery_id: str, now: datetime) -> Sent:
        """Every address but those SES reported bouncing for good or complaining (``alerts.suppressions``): an
        attempt with only those left is a failure that is not retried."""
        held = suppressions.of(config["addresses"])
        addresses = [a for a in config["addresses"] if a.lower() not in held]
        if not addresses:
            return Sent(ok=False, error=SUPPRESSED)
        return Sent.to_each(
            addresses, lambda address: send_email(address, message.subject, message.text, message.html), "ses"
        )
