"""Chat incoming webhooks: Slack (Block Kit), Discord (embeds), Microsoft Teams (an Adaptive Card).

Each URL is itself the credential: masked on read, and only the service's own host is accepted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator

from chalicelib.alerts import http
from chalicelib.alerts.kinds.base import Kind, Sent, mask_url
from chalicelib.alerts.notification import Notification
from chalicelib.masking import MASK
from chalicelib.monitors.validation import validate_destination, validate_url
from chalicelib.schema import Schema

COLOURS = {  # down red, recovered green, everything else amber
    "incident.opened": 0xD92D20,
    "incident.resolved": 0x12B76A,
    "test": 0x2E90FA,
}
AMBER = 0xF79009


# The fixed words of the services' webhook paths (not secrets; the rest of a path is).
URL_WORDS = {"services", "webhooks", "workflows", "triggers", "manual", "paths", "invoke", "webhookb2"}


def _colour(notification: Notification) -> int:
    return COLOURS.get(notification.type, AMBER)


class _HookConfig(Schema):
    """A chat service's incoming webhook URL: https, on one of ``HOSTS`` (".x.com": any subdomain), under ``PATH``.
    A masked value passes here; the kind's ``prepare`` lets it only keep the stored URL."""

    HOSTS: ClassVar[tuple[str, ...]]
    PATH: ClassVar[str] = "/"
    EXAMPLE: ClassVar[str]

    webhook_url: str = Field(
        min_length=1,
        max_length=2048,
        json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]://"},  # published; _url checks all
    )

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if MASK in value:
            return value
        url = validate_url(value)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        on_host = any(host == h or (h.startswith(".") and host.endswith(h)) for h in cls.HOSTS)
        if parts.scheme != "https" or not on_host or not parts.path.startswith(cls.PATH):
            raise ValueError(f"must be an incoming webhook URL like {cls.EXAMPLE}")
        return url


def _details(notification: Notification) -> list[tuple[str, str]]:
    out = []
    for item in notification.items:
        incident = item.incident or {}
        detail = incident.get("cause") or ""
        regions = ", ".join(incident.get("affected_regions") or [])
        out.append((item.monitor["name"], " · ".join(p for p in (detail, regions) if p) or "—"))
    return out


class _Chat(Kind):
    hosts: tuple[str, ...] = ()

    def prepare(self, config: dict[str, Any], current: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        url = config["webhook_url"]
        if MASK in url:  # only ever the masked form of the stored URL, which keeps it (the validator let it by)
            if current is None or url != mask_url(current["webhook_url"]):
                raise ValueError("send the full webhook URL (a masked one can only keep the stored URL)")
            return dict(current), {}
        validate_destination(url, "config.webhook_url")
        return {"webhook_url": url}, {}

    def masked(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"webhook_url": mask_url(config["webhook_url"])}

    def secrets(self, config: dict[str, Any]) -> list[str]:
        """The URL is the credential, and a receiver may echo any part of it: the URL, its path, each of the
        path's tokens and each query value (the masked URL shows only the first segment, never a token)."""
        url = config["webhook_url"]
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/")[2:] if len(s) >= 6 and s.lower() not in URL_WORDS]
        return [url, parts.path, *segments, *(v for _, v in parse_qsl(parts.query) if len(v) >= 6)]

    def send(self, message: dict[str, Any], config: dict[str, Any], delivery_id: str, now: datetime) -> Sent:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        return Sent.from_response(http.post(config["webhook_url"], body, {}, self.secrets(config)))


# ------------------------------------------------------------------------------------------------------- Slack


class SlackConfig(_HookConfig):
    HOSTS = ("hooks.slack.com",)
    EXAMPLE = "https://hooks.slack.com/services/…"


def slack_message(notification: Notification) -> dict[str, Any]:
    headline = notification.headline()
    fields = [
        {"type": "mrkdwn", "text": f"*{_escape(name)}*\n{_escape(detail)}"} for name, detail in _details(notification)
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150], "emoji": True}},
    ]
    for start in range(0, min(len(fields), 40), 10):  # Slack allows 10 fields per section
        blocks.append({"type": "section", "fields": fields[start : start + 10]})
    update = notification.update or {}
    if update.get("text"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(str(update["text"]))[:2900]}})
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open in Vigil"}, "url": notification.link()}
            ],
        }
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Vigil · {notification.type}"}]})
    return {"text": headline, "blocks": blocks}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack(_Chat):
    name = "slack"
    config_model = SlackConfig

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> dict[str, Any]:
        return slack_message(notification)


# ----------------------------------------------------------------------------------------------------- Discord


class DiscordConfig(_HookConfig):
    HOSTS = ("discord.com", "discordapp.com")
    PATH = "/api/webhooks/"
    EXAMPLE = "https://discord.com/api/webhooks/…"


def discord_message(notification: Notification) -> dict[str, Any]:
    update = notification.update or {}
    embed: dict[str, Any] = {
        "title": notification.headline()[:256],
        "url": notification.link(),
        "color": _colour(notification),
        "fields": [
            {"name": name[:256], "value": detail[:1024], "inline": False} for name, detail in _details(notification)
        ][:25],
        "timestamp": notification.payload()["timestamp"],
        "footer": {"text": "Vigil"},
    }
    if update.get("text"):
        embed["description"] = str(update["text"])[:4096]
    # No mentions: a monitor's name must never ping @everyone.
    return {"username": "Vigil", "embeds": [embed], "allowed_mentions": {"parse": []}}


class Discord(_Chat):
    name = "discord"
    config_model = DiscordConfig

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> dict[str, Any]:
        return discord_message(notification)


# ------------------------------------------------------------------------------------------------------- Teams


class TeamsConfig(_HookConfig):
    # Workflows (Power Automate) URLs, and the older Office 365 connector URLs.
    HOSTS = (".logic.azure.com", ".webhook.office.com", ".powerplatform.com")
    EXAMPLE = "https://prod-00.westus.logic.azure.com/workflows/…"


def teams_message(notification: Notification) -> dict[str, Any]:
    update = notification.update or {}
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True, "text": notification.headline()},
        {
            "type": "FactSet",
            "facts": [{"title": name, "value": detail} for name, detail in _details(notification)][:30],
        },
    ]
    if update.get("text"):
        body.append({"type": "TextBlock", "wrap": True, "text": str(update["text"])})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": "Open in Vigil", "url": notification.link()}],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


class Teams(_Chat):
    name = "teams"
    config_model = TeamsConfig

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> dict[str, Any]:
        return teams_message(notification)
