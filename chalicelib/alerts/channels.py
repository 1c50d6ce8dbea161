"""Alert channels: create (secrets generated and shown once), read (secrets masked), change, delete, list.

A channel's URL passes the SSRF guard when it is set and again at every send.  Every read and write is keyed
by the team.  A config holding secrets is stored sealed (``chalicelib.sealing``), bound to its team and channel,
with the masked config readers see beside it: reading a channel opens nothing; sending and changing one do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from chalicelib import errors
from chalicelib.alerts.deliveries import Delivery, to_delivery
from chalicelib.alerts.kinds import KINDS
from chalicelib.alerts.models import ChannelModel, DeliveryModel
from chalicelib.checks import ssrf
from chalicelib.ids import new_id
from chalicelib.sealing.service import ALERT_CHANNEL, Unreadable, seal, unseal
from chalicelib.storage import cursor
from chalicelib.storage.base import (
    Counter,
    condition_failed,
    counted_transaction,
    load_team_item,
    retry_lost_races,
)


@dataclass(frozen=True)
class Channel:
    id: str
    team_id: str
    type: str
    name: str
    config: dict[str, Any] = field(repr=False)  # as stored: masked when sealed, else secrets included (legacy)
    enabled: bool
    disabled_reason: str | None
    notify_on: tuple[str, ...]
    cooldown_seconds: int
    created_at: datetime
    updated_at: datetime
    sealed: bool = False  # its secrets are sealed beside the masked ``config``
    sealed_config: str | None = field(default=None, repr=False)

    def public_config(self, *, manager: bool) -> dict[str, Any]:
        """The config with its secrets masked; more of it for who may not change the channel (not a ``manager``): a
        webhook's URL past its first path segment.  A sealed channel stores only the readers' view in the clear: a
        manager's is made from the sealed config, opened (or the readers' view when it does not open here)."""
        kind = KINDS[self.type]
        if not self.sealed:
            config = kind.masked(self.config)
        elif manager and self.sealed_config is not None:
            try:
                config = kind.masked(_opened(self.team_id, self.id, self.sealed_config))
            except (Unreadable, errors.ServiceUnavailable):
                config = dict(self.config)
        else:
            config = dict(self.config)
        return config if manager else kind.masked_for_readers(config)


def to_channel(item: ChannelModel) -> Channel:
    return Channel(
        id=item.channel_id,
        team_id=item.team_id,
        type=item.type,
        name=item.name,
        config=dict(item.config or {}),
        enabled=bool(item.enabled),
        disabled_reason=item.disabled_reason,
        notify_on=tuple(str(n) for n in item.notify_on or ()),
        cooldown_seconds=int(item.cooldown_seconds),
        created_at=item.created_at,
        updated_at=item.updated_at,
        sealed=item.sealed_config is not None,
        sealed_config=item.sealed_config,
    )


def opened_config(item: ChannelModel) -> dict[str, Any]:
    """The config to send with or to change, secrets included: opened when sealed (``sealing.Unreadable`` when it
    does not open here), as stored when written before sealing."""
    if item.sealed_config is None:
        return dict(item.config or {})
    return _opened(item.team_id, item.channel_id, item.sealed_config)


def _opened(team_id: str, channel_id: str, sealed_config: str) -> dict[str, Any]:
    return dict(json.loads(unseal(ALERT_CHANNEL, sealed_config, team_id=team_id, record=channel_id)))


def _store(item: ChannelModel, config: dict[str, Any]) -> None:
    """Put ``config`` on the item: sealed, with the masked config beside it, when the kind finds a secret in it."""
    kind = KINDS[item.type]
    if any(kind.secrets(config)):
        item.sealed_config = seal(ALERT_CHANNEL, json.dumps(config), team_id=item.team_id, record=item.channel_id)
        item.config = kind.masked_for_readers(kind.masked(config))  # a webhook's path tokens are secrets at rest too
    else:
        item.sealed_config = None
        item.config = config


def _config(
    team_id: str, kind_name: str, raw: Any, current: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a kind's config (422 naming ``config.<field>``) and let the kind prepare what it stores (its URL
    looked up through the SSRF guard as the team's)."""
    kind = KINDS[kind_name]
    try:
        parsed = kind.config_model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            errors.FieldError(".".join(["config", *(str(p) for p in e["loc"])]), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise errors.ValidationFailed(problems) from None
    try:
        with ssrf.lookups_for(team_id):
            return kind.prepare(parsed.model_dump(), current)
    except ValueError as exc:
        raise errors.ValidationFailed.single("config", str(exc)) from None


def create(
    team_id: str, fields: dict[str, Any], now: datetime, *, counter: Counter | None = None
) -> tuple[Channel, dict[str, Any]]:
    """Returns the channel and what is shown only now (a webhook's signing secret).  ``counter``: the plan's count
    of channels, moved in the same write."""
    config, once = _config(team_id, fields["type"], fields["config"], None)
    item = ChannelModel(
        team_id,
        new_id("ch"),
        type=fields["type"],
        name=fields["name"],
        enabled=fields.get("enabled", True),
        notify_on=list(fields.get("notify_on") or ["down", "up"]),
        cooldown_seconds=fields.get("cooldown_seconds", 300),
        created_at=now,
        updated_at=now,
    )
    _store(item, config)
    counted_transaction(counter, lambda t: t.save(item, condition=ChannelModel.channel_id.does_not_exist()))
    return to_channel(item), once


def _load(team_id: str, channel_id: str) -> ChannelModel:
    return load_team_item(ChannelModel, team_id, channel_id, "alert channel")


def get(team_id: str, channel_id: str) -> Channel:
    return to_channel(_load(team_id, channel_id))


def require_team_channels(team_id: str, channel_ids: tuple[str, ...] | list[str]) -> None:
    """404 naming the first id that is not an alert channel of this team (one BatchGetItem for all of them)."""
    keys = [(team_id, c) for c in dict.fromkeys(channel_ids)]
    if not keys:
        return
    found = {
        c.channel_id
        for c in ChannelModel.batch_get(keys, consistent_read=True, attributes_to_get=["team_id", "channel_id"])
    }
    for channel_id in channel_ids:
        if channel_id not in found:
            raise errors.NotFound(f"No alert channel {channel_id} in this team.")


def update(team_id: str, channel_id: str, changes: dict[str, Any], now: datetime) -> Channel:
    """A partial change.  The type is fixed; a new config replaces the old one (masked values sent back keep
    the stored secret: the stored config is opened, and the new one sealed).  Re-enabling a channel clears why it was
    disabled.  A stale concurrent edit → 409, as is a stored config that does not open here."""
    item = _load(team_id, channel_id)
    if "type" in changes and changes["type"] != item.type:
        raise errors.ValidationFailed.single("type", "a channel's type cannot change; create another channel")
    if "config" in changes:
        try:
            current = opened_config(item)
        except Unreadable:
            raise errors.Conflict(
                "The channel's stored secrets cannot be read: delete the channel and create it again."
            ) from None
        _store(item, _config(team_id, item.type, changes["config"], current)[0])
    for name in ("name", "enabled", "cooldown_seconds"):
        if name in changes:
            setattr(item, name, changes[name])
    if "notify_on" in changes:
        item.notify_on = list(changes["notify_on"])  # type: ignore[assignment]
    if changes.get("enabled"):
        item.disabled_reason = None
    item.updated_at = now
    item.save()
    return to_channel(item)


def seal_stored(team_id: str, channel_id: str) -> bool:
    """Seal a channel's config stored before sealing (``infra/seal.py``), as a change would; True if it did.  A
    concurrent edit is read again (the version); a channel sealed, deleted or without a secret is left alone."""

    def attempt() -> bool:
        try:
            item = ChannelModel.get(team_id, channel_id, consistent_read=True)
        except ChannelModel.DoesNotExist:
            return False
        if item.sealed_config is not None or not any(KINDS[item.type].secrets(dict(item.config or {}))):
            return False
        _store(item, dict(item.config or {}))
        item.save()
        return True

    return retry_lost_races(attempt)


def disable(team_id: str, channel_id: str, reason: str, now: datetime) -> bool:
    """Turn a channel off (a receiver answered 410 Gone).  True if this call did it."""
    try:
        ChannelModel(team_id, channel_id).update(
            actions=[
                ChannelModel.enabled.set(False),
                ChannelModel.disabled_reason.set(reason),
                ChannelModel.updated_at.set(now),
            ],
            condition=ChannelModel.channel_id.exists() & (ChannelModel.enabled == True),  # noqa: E712
            add_version_condition=False,
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def delete(team_id: str, channel_id: str, *, counter: Counter | None = None) -> None:
    item = _load(team_id, channel_id)
    counted_transaction(counter, lambda t: t.delete(item, add_version_condition=False))


def purge_team(team_id: str) -> None:
    for item in ChannelModel.query(team_id):
        item.delete(add_version_condition=False)


def count(team_id: str) -> int:
    return sum(
        1 for _ in ChannelModel.query(team_id, attributes_to_get=["team_id", "channel_id"], consistent_read=True)
    )


def list_channels(team_id: str, *, limit: int, after: str | None) -> tuple[list[Channel], str | None]:
    page, next_cursor = cursor.paginate(
        lambda start: ChannelModel.query(team_id, last_evaluated_key=start, page_size=cursor.page_size(limit)),
        team_id=team_id,
        scope="alert-channels",
        limit=limit,
        after=after,
        key=("team_id", "channel_id"),
    )
    return [to_channel(item) for item in page], next_cursor


def list_deliveries(
    team_id: str, channel_id: str, *, limit: int, after: str | None
) -> tuple[list[Delivery], str | None]:
    """Newest first; only for a channel of the caller's team (404 otherwise)."""
    _load(team_id, channel_id)
    page, next_cursor = cursor.paginate(
        lambda start: DeliveryModel.query(
            channel_id, scan_index_forward=False, last_evaluated_key=start, page_size=cursor.page_size(limit)
        ),
        team_id=team_id,
        scope=f"deliveries|{channel_id}",
        limit=limit,
        after=after,
        key=("target", "delivery_id"),
    )
    return [to_delivery(item) for item in page], next_cursor
