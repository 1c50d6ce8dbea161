"""The registry of channel kinds: adding one is a module with a config model, a builder and a sender, and a line
here."""

from __future__ import annotations

from chalicelib.alerts.kinds.base import Kind, Sent
from chalicelib.alerts.kinds.chat import Discord, Slack, Teams
from chalicelib.alerts.kinds.email import Email
from chalicelib.alerts.kinds.pagerduty import PagerDuty
from chalicelib.alerts.kinds.sms import Sms
from chalicelib.alerts.kinds.webhook import Webhook

KINDS: dict[str, Kind] = {k.name: k for k in (Email(), Sms(), Webhook(), Slack(), Discord(), Teams(), PagerDuty())}

__all__ = ["KINDS", "Kind", "Sent"]
