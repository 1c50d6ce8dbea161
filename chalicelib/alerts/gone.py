"""A channel whose receiver is gone: a 410 answer turns the channel off and tells the team's admins by email.

410 Gone means the receiver will never accept again, so retrying is pointless and every later alert would fail
the same way.  The channel is disabled once (a conditional update:
of two concurrent 410s only one sends the emails) and stays off until someone fixes and re-enables it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from chalicelib.alerts import channels
from chalicelib.alerts.models import ChannelModel
from chalicelib.aws.mail import deliver as deliver_email
from chalicelib.settings import get_settings
from chalicelib.teams.service import list_members


def channel_gone(channel: ChannelModel, now: datetime) -> None:
    """410 Gone: the receiver will never accept again.  Turn the channel off and tell the team's admins."""
    reason = "The receiver answered 410 Gone"
    if not channels.disable(channel.team_id, channel.channel_id, reason, now):
        return
    app_url = get_settings().app_url.rstrip("/")
    for member in list_members(channel.team_id):
        if member.role in ("owner", "admin"):
            deliver_email(member.email, _disabled_email(channel, app_url), channel_id=channel.channel_id)


@dataclass(frozen=True)
class _Text:
    subject: str
    text: str
    html: str


def _disabled_email(channel: ChannelModel, app_url: str) -> _Text:
    name = channel.name
    link = f"{app_url}/alert-channels/{channel.channel_id}"
    text = (
        f'Vigil turned off the alert channel "{name}" ({channel.type}): its receiver answered 410 Gone, which '
        f"means it will not accept notifications again.\n\nFix or replace it, then turn it back on: {link}\n"
    )
    body = (
        f"<p>Vigil turned off the alert channel <strong>{html.escape(name)}</strong> ({channel.type}): its "
        "receiver answered <code>410 Gone</code>, which means it will not accept notifications again.</p>"
        f'<p><a href="{html.escape(link)}">Fix or replace it, then turn it back on</a>.</p>'
    )
    return _Text(f'[Vigil] Alert channel "{name}" was turned off', text, body)
