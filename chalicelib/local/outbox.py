"""The local outbox: every email the embedded SES emulator accepted, newest first.

Only meaningful with the embedded emulator (moto runs in this process); the
outbox is a developer tool and never exists in a deployed stage.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from typing import Any


def _parts(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    text = text_part.get_content() if text_part is not None else ""
    html = html_part.get_content() if html_part is not None else ""
    return str(text), str(html)


def read_outbox() -> list[dict[str, Any]]:
    from moto.ses.models import ses_backends

    found: list[tuple[int, dict[str, Any]]] = []
    order = 0
    for account in list(ses_backends.keys()):
        for region, backend in list(ses_backends[account].items()):
            for sent in list(backend.sent_messages):
                order += 1
                raw = getattr(sent, "raw_data", None)
                if raw is None:
                    continue  # only raw (MIME) mail is sent by Vigil
                message = email.message_from_string(raw, policy=policy.default)
                assert isinstance(message, EmailMessage)
                text, html = _parts(message)
                found.append(
                    (
                        order,
                        {
                            "id": sent.id,
                            "to": [a.strip() for a in str(message.get("To", "")).split(",") if a.strip()],
                            "from": str(message.get("From", "")),
                            "subject": str(message.get("Subject", "")),
                            "date": str(message.get("Date", "")),
                            "text": text,
                            "html": html,
                            "region": region,
                        },
                    )
                )
    return [item for _, item in sorted(found, key=lambda pair: pair[0], reverse=True)]
