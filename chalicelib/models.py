"""Imports every table model so the storage registry knows them all."""

from __future__ import annotations

from chalicelib.alerts.models import AlertMarkModel, ChannelModel, DeliveryModel
from chalicelib.auth.models import OneTimeTokenModel, SessionModel
from chalicelib.incidents.models import (
    EventModel,
    IncidentModel,
    MaintenanceWindowModel,
    MonitorStateModel,
)
from chalicelib.monitors.models import MonitorModel, ResultModel, RollupModel
from chalicelib.ratelimit.models import CounterModel
from chalicelib.status_pages.models import SlugModel, StatusPageModel
from chalicelib.teams.models import InvitationModel, MembershipModel, TeamModel
from chalicelib.users.models import UserEmailModel, UserModel

__all__ = [
    "AlertMarkModel",
    "ChannelModel",
    "CounterModel",
    "DeliveryModel",
    "EventModel",
    "IncidentModel",
    "InvitationModel",
    "MaintenanceWindowModel",
    "MembershipModel",
    "MonitorModel",
    "MonitorStateModel",
    "OneTimeTokenModel",
    "ResultModel",
    "RollupModel",
    "SessionModel",
    "SlugModel",
    "StatusPageModel",
    "TeamModel",
    "UserEmailModel",
    "UserModel",
]
