"""Outgoing email through SES: one multipart (text + HTML) message per recipient."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from chalicelib.aws.clients import client
from chalicelib.observability import logger
from chalicelib.settings import get_settings


def build_message(to: str, subject: str, text: str, html: str) -> EmailMessage:
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="vigil")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def send_email(to: str, subject: str, text: str, html: str) -> str:
    """Send one email; returns the SES message id."""
    message = build_message(to, subject, text, html)
    response = client("ses").send_raw_email(
        Source=get_settings().email_from,
        Destinations=[to],
        RawMessage={"Data": message.as_bytes()},
    )
    logger.info("email sent", extra={"subject": subject, "ses_message_id": response["MessageId"]})
    return str(response["MessageId"])
