"""Webhooks signed per the Standard Webhooks spec (https://www.standardwebhooks.com).

``webhook-id`` is the delivery's id, the same on every retry, so receivers can drop duplicates;
``webhook-signature`` is ``v1,`` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")), over the exact bytes sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator

from chalicelib.alerts import http
from chalicelib.alerts.kinds.base import Kind, Sent, mask_url
from chalicelib.alerts.notification import Notification, public_url
from chalicelib.masking import MASK, MaskedWithoutValue, origin, restore_masked, restore_url
from chalicelib.monitors.validation import validate_destination, validate_headers, validate_url
from chalicelib.schema import Schema

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


class WebhookConfig(Schema):
    url: str = Field(
        min_length=1,
        max_length=2048,
        json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},  # published; _url checks all
    )
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return validate_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        lowered = {k.lower() for k in value}
        if lowered & {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}:
            raise ValueError("webhook-* and Content-Type are set by Vigil")
        return validate_headers(value)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def body_of(notification: Notification) -> bytes:
    return json.dumps(notification.payload(), separators=(",", ":"), ensure_ascii=False).encode()


class Webhook(Kind):
    name = "webhook"
    config_model = WebhookConfig
    groupable = False  # machines want one event per incident, to correlate by its id

    def prepare(self, config: dict[str, Any], current: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        # a masked query value or header sent back keeps its stored value — only for the same receiver: a stored
        # credential never follows the channel to another host
        same_receiver = current is not None and origin(config["url"]) == origin(current["url"])
        try:
            config = {**config, "url": restore_url(config["url"], current["url"] if current and same_receiver else "")}
        except MaskedWithoutValue:
            raise ValueError(
                "a masked URL query value only keeps the stored value of the same parameter, for the same receiver"
                " (scheme, host and port); send the full URL"
            ) from None
        if MASK in urlsplit(config["url"]).path:
            raise ValueError("send the full URL (a masked one can only keep the stored URL)")
        validate_destination(config["url"], "config.url")
        kept = (current or {}).get("headers") or {} if same_receiver else {}
        try:
            headers = restore_masked(dict(config.get("headers") or {}), kept)
        except MaskedWithoutValue:
            raise ValueError(
                "a masked header value only keeps an existing header of the same receiver (scheme, host and port); "
                "send the value itself"
            ) from None
        if current is not None:
            return {"url": config["url"], "headers": headers, "secret": current["secret"]}, {}
        secret = new_secret()
        return {"url": config["url"], "headers": headers, "secret": secret}, {"secret": secret}

    def masked(self, config: dict[str, Any]) -> dict[str, Any]:
        # every header value: a receiver's credential can have any name (X-Hub-Sig, X-Shared, …)
        return {"url": public_url(config["url"]), "headers": dict.fromkeys(config.get("headers") or {}, MASK)}

    def masked_for_readers(self, config: dict[str, Any]) -> dict[str, Any]:
        # A receiver's token can be in the URL's path (``/hooks/<id>/<token>``), under any name in its query: past
        # its first segment, the URL is for those who manage the channel only, as a chat URL is for everyone.
        return {**self.masked(config), "url": mask_url(config["url"])}

    def secrets(self, config: dict[str, Any]) -> list[str]:
        parts = urlsplit(config["url"])
        query = [v for _, v in parse_qsl(parts.query) if len(v) >= 6]
        hidden = [s for s in parts.path.strip("/").split("/")[1:] if len(s) >= 6]  # what readers do not see
        return [config.get("secret", ""), *(config.get("headers") or {}).values(), *query, *hidden]

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> bytes:
        return body_of(notification)

    def send(self, message: bytes, config: dict[str, Any], delivery_id: str, now: datetime) -> Sent:
        timestamp = int(now.timestamp())
        headers = {
            **(config.get("headers") or {}),
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(config["secret"], delivery_id, timestamp, message),
        }
        return Sent.from_response(http.post(config["url"], message, headers, self.secrets(config)))
