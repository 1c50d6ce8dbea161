"""The alerts queue and the three messages it carries.

``Deliver`` runs one attempt of a delivery; ``Flush`` sends a group (the monitors that went down or came back
together in one minute) once its minute is over; ``PasswordReset`` mails a reset link, if the address has an
account, off the request that asked (whose answer must not tell, by its time, whether it has one).  A wait
longer than SQS's DelaySeconds allows is made of hops: the message carries ``not_before`` and goes back on the
queue until then.

The body is compact JSON with an ``op`` naming the message.  Its bytes must not change: messages already on the
queue (a retry waits up to an hour) are read by the next deployed version.  A body that is not one of these
messages is refused with ``MalformedMessage``, so the handler reports it and SQS retries it, then parks it in
the dead-letter queue; an ``op`` this version does not know is ``UnknownOp``, logged and dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.settings import get_settings

MAX_DELAY_S = 900  # SQS's DelaySeconds limit; longer waits hop through the queue


class MalformedMessage(ValueError):
    """A body on the alerts queue that is not a message Vigil sends."""


class UnknownOp(MalformedMessage):
    """A well-formed body whose ``op`` this version does not know."""

    def __init__(self, op: Any) -> None:
        super().__init__(f"unknown alert message op: {op!r}")
        self.op = op


@dataclass(frozen=True)
class Deliver:
    """Run attempt ``attempt`` of the delivery ``(target, delivery_id)``, not before ``not_before``."""

    target: str
    delivery_id: str
    attempt: int
    not_before: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "op": "deliver",
            "target": self.target,
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
        }
        if self.not_before is not None:
            data["not_before"] = self.not_before.astimezone(UTC).isoformat()
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> Deliver:
        return Deliver(
            target=_str(data, "target"),
            delivery_id=_str(data, "delivery_id"),
            attempt=_int(data, "attempt"),
            not_before=_time(data, "not_before") if data.get("not_before") else None,
        )


@dataclass(frozen=True)
class Flush:
    """Send the group ``key`` (an alert mark) to ``target``: one delivery of ``event`` for the minute ``at``."""

    key: str
    target: str
    team_id: str
    event: str  # the payload type (incident.opened, incident.resolved)
    at: datetime  # the group's minute (UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "op": "flush",
            "key": self.key,
            "target": self.target,
            "team_id": self.team_id,
            "event": self.event,
            "at": self.at.isoformat(),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Flush:
        return Flush(
            key=_str(data, "key"),
            target=_str(data, "target"),
            team_id=_str(data, "team_id"),
            event=_str(data, "event"),
            at=_time(data, "at"),
        )


@dataclass(frozen=True)
class PasswordReset:
    """Mail a reset link to ``email`` if an account has it, as asked at ``at``."""

    email: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"op": "password_reset", "email": self.email, "at": self.at.astimezone(UTC).isoformat()}

    @staticmethod
    def from_json(data: dict[str, Any]) -> PasswordReset:
        return PasswordReset(email=_str(data, "email"), at=_time(data, "at"))


Message = Deliver | Flush | PasswordReset
_PARSERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    "deliver": Deliver.from_json,
    "flush": Flush.from_json,
    "password_reset": PasswordReset.from_json,
}


def encode_message(message: Message) -> str:
    return json.dumps(message.to_json(), separators=(",", ":"))


def decode_message(body: str) -> Message:
    """The message a queue body carries; ``MalformedMessage`` (naming what is wrong) if it carries none."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"alert message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"alert message is not a JSON object: {type(data).__name__}")
    op = data.get("op")
    parse = _PARSERS.get(op) if isinstance(op, str) else None
    if parse is None:
        raise UnknownOp(op)
    return parse(data)


def _str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedMessage(f"alert message {data.get('op')!r}: {name} must be a non-empty string, not {value!r}")
    return value


def _int(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedMessage(f"alert message {data.get('op')!r}: {name} must be an integer, not {value!r}")
    return value


def _time(data: dict[str, Any], name: str) -> datetime:
    value = _str(data, name)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise MalformedMessage(f"alert message {data.get('op')!r}: {name} is not an ISO time: {value!r}") from None


# --------------------------------------------------------------------------------------------- sending


_queue_urls: dict[str, str] = {}


def _queue_url() -> str:
    name = names.alert_queue(get_settings())
    if name not in _queue_urls:
        _queue_urls[name] = client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
    return _queue_urls[name]


def enqueue(message: Message, delay_s: float = 0) -> None:
    client("sqs").send_message(
        QueueUrl=_queue_url(),
        MessageBody=encode_message(message),
        DelaySeconds=max(0, min(MAX_DELAY_S, int(delay_s))),
    )


def enqueue_attempt(
    target: str, delivery_id: str, attempt: int, now: datetime, not_before: datetime | None = None
) -> None:
    delay = 0.0
    if not_before is not None:
        delay = (not_before - now).total_seconds()
    enqueue(Deliver(target, delivery_id, attempt, not_before), delay)
