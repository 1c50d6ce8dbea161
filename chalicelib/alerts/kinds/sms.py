"""SMS through SNS: one short text."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from chalicelib.alerts.kinds.base import Kind, Sent
from chalicelib.alerts.notification import Notification
from chalicelib.aws.clients import client
from chalicelib.schema import Schema

Phone = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, e.g. +14155550123")]
MAX_LENGTH = 160


class SmsConfig(Schema):
    phone_numbers: list[Phone] = Field(min_length=1, max_length=5)


def render(notification: Notification) -> str:
    text = f"Vigil: {notification.headline()}"
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 1] + "…"


class Sms(Kind):
    name = "sms"
    config_model = SmsConfig
    # A text costs money and wakes people: only what a person must act on.
    payload_types = (
        "incident.opened",
        "incident.resolved",
        "ssl.expiring",
        "monitor.degraded",
        "incident.acknowledged",
    )

    def build(self, notification: Notification, config: dict[str, Any], delivery_id: str) -> str:
        return render(notification)

    def remaining(self, config: dict[str, Any], reached: list[str]) -> dict[str, Any]:
        return {**config, "phone_numbers": [n for n in config["phone_numbers"] if n not in reached]}

    def send(self, message: str, config: dict[str, Any], delivery_id: str, now: datetime) -> Sent:
        sns = client("sns")
        kind = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        return Sent.to_each(
            config["phone_numbers"],
            lambda number: sns.publish(PhoneNumber=number, Message=message, MessageAttributes=kind),
            "sns",
        )
