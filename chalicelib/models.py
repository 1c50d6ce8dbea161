"""The table manifest: every area's PynamoDB models, in one list.

The storage layer imports no area: whoever configures or creates tables hands it the models. The API and its
event handlers configure all of them (``chalicelib.wiring``), ``infra/`` and the local stack create all of them,
and the check worker names only the two it reads and writes.
"""

from __future__ import annotations

from chalicelib.alerts.models import AlertMarkModel, ChannelModel, DeliveryModel, SuppressionModel
from chalicelib.auth.models import ApiKeyModel, OneTimeTokenModel, SessionModel
from chalicelib.billing.models import StripeCustomerModel, StripeEventModel, UsageModel
from chalicelib.incidents.models import (
    EventModel,
    IncidentModel,
    MaintenanceWindowModel,
    MonitorStateModel,
)
from chalicelib.monitors.models import (
    ChangeModel,
    MonitorModel,
    PackModel,
    PeriodModel,
    PingModel,
    PingTokenModel,
    ProgressModel,
    RollupModel,
)
from chalicelib.ratelimit.models import CounterModel
from chalicelib.sealing.models import DataKeyModel
from chalicelib.status_pages.models import SlugModel, StatusPageModel
from chalicelib.storage.base import BaseModel
from chalicelib.teams.models import InvitationModel, MembershipModel, TeamModel
from chalicelib.users.models import UserEmailModel, UserModel

# By logical name: infra/resources.json lists the tables in this order.
ALL_MODELS: tuple[type[BaseModel], ...] = tuple(
    sorted(
        (
            AlertMarkModel,
            ApiKeyModel,
            ChangeModel,
            ChannelModel,
            CounterModel,
            DataKeyModel,
            DeliveryModel,
            EventModel,
            IncidentModel,
            InvitationModel,
            MaintenanceWindowModel,
            MembershipModel,
            MonitorModel,
            MonitorStateModel,
            OneTimeTokenModel,
            PackModel,
            PeriodModel,
            PingModel,
            PingTokenModel,
            ProgressModel,
            RollupModel,
            SessionModel,
            SlugModel,
            SuppressionModel,
            StatusPageModel,
            StripeCustomerModel,
            StripeEventModel,
            TeamModel,
            UserEmailModel,
            UsageModel,
            UserModel,
        ),
        key=lambda model: model.logical_name,
    )
)
