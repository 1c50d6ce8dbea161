"""Outgoing email through SES: one multipart (text + HTML) message per recipient."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from chalicelib.aws import names
from chalicelib.aws.clients import client
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.text import NOT_A_LINE


def one_line(text: str) -> str:
    """A header value: every character that is not of a line (``text.NOT_A_LINE``) a space (a name stored before
    names were one line would otherwise make the header, and so the email, fail)."""
    return " ".join(NOT_A_LINE.sub(" ", text).split())


def build_message(to: str, subject: str, text: str, html: str) -> EmailMessage:
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = to
    message["Subject"] = one_line(subject)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="vigil")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def send_email(to: str, subject: str, text: str, html: str) -> str:
    """Send one email; returns the SES message id."""
    message = build_message(to, subject, text, html)
    settings = get_settings()
    response = client("ses").send_raw_email(
        Source=settings.email_from,
        Destinations=[to],
        RawMessage={"Data": message.as_bytes()},
        ConfigurationSetName=names.configuration_set(settings),  # bounces and complaints come back
    )
    logger.info("email sent", extra={"subject": subject, "ses_message_id": response["MessageId"]})
    return str(response["MessageId"])


class Message(Protocol):
    @property
    def subject(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str: ...


def deliver(to: str, message: Message, **log_keys: str) -> None:
    """Send, and log a failure instead of raising: the change that asked for the email stands, and the
    user can ask for it again (resend verification, forgot password, invite again)."""
    try:
        send_email(to, message.subject, message.text, message.html)
    except Exception:  # noqa: BLE001 - any SES or network failure is logged, never fatal to the caller
        logger.exception("email could not be sent", extra={"subject": message.subject, **log_keys})
