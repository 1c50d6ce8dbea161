"""The use cases that cross areas, each in the order that matters, readable in one place.

An area's service changes what that area owns; when a change must reach other areas (a deleted monitor's
incident resolves and it leaves its status pages; a deleted team takes everything with it), the edges call the
use case here instead of the area's service.  Nothing is registered at import: every effect is an explicit call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib import errors
from chalicelib.alerts import channels
from chalicelib.alerts import queue as alert_queue
from chalicelib.auth import apikeys
from chalicelib.auth import service as auth
from chalicelib.aws.mail import deliver
from chalicelib.billing import limits, plans
from chalicelib.billing import service as billing
from chalicelib.checks.model import CheckResult
from chalicelib.emails import Email, plan_changed
from chalicelib.incidents import edges, maintenance, tracker
from chalicelib.incidents import service as incidents
from chalicelib.monitors import results
from chalicelib.monitors import service as monitors
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings
from chalicelib.status_pages import publish
from chalicelib.status_pages import service as status_pages
from chalicelib.teams import invitations
from chalicelib.teams import service as teams
from chalicelib.users import service as users

# --------------------------------------------------------------------------------------------- monitors


def create_monitor(
    team_id: str, config: monitors.MonitorConfig, all_regions: tuple[str, ...], now: datetime
) -> monitors.Monitor:
    """1. The plan's limits on its shape: the shortest interval and regions per monitor (402), with default
    regions as many as the plan allows; 2. the config is completed and validated (422); 3. its channels must be
    the team's (404); 4. it is saved, counted against the plan's active monitors in the same transaction (402)."""
    plan = limits.plan_of(team_id)
    _fits_plan(plan, config.type, config.interval_seconds, config.regions)
    return limits.admit(
        team_id,
        "monitors",
        lambda: monitors.count_active(team_id),
        lambda counter: monitors.create(
            team_id,
            config,
            all_regions,
            now,
            check_channels=_team_channels(team_id),
            counter=counter,
            default_regions=limits.default_regions(plan, all_regions),
        ),
    )


def _fits_plan(plan: Any, kind: str, interval_seconds: int | None, regions: tuple[str, ...] | None) -> None:
    if kind == "heartbeat":
        return  # a period of at least a minute, in one place: within every plan
    if interval_seconds is not None:
        limits.check_interval(plan, interval_seconds)
    if regions:
        limits.check_regions(plan, len(set(regions)))


def _monitor_counter(team_id: str) -> Callable[[int], limits.Counter]:
    """The plan's count of the team's active monitors, as a step of +1 or -1."""
    return lambda delta: limits.counter(team_id, "monitors", delta, lambda: monitors.count_active(team_id))


def update_monitor(
    team_id: str,
    monitor_id: str,
    changes: dict[str, Any],
    all_regions: tuple[str, ...],
    now: datetime,
    check_target: Callable[[dict[str, Any]], None],
) -> monitors.Monitor:
    """1. The monitor is loaded (404); 2. the change checked against its type, its new target by ``check_target``
    (422), completed and validated (422); 3. new channels must be the team's (404); 4. it is saved under its
    version (a lost race reloads and goes again from 1).  A shorter interval or more regions than the plan allows
    is refused first (402)."""
    interval, regions = changes.get("interval_seconds"), changes.get("regions")
    if interval is not None or regions:
        _fits_plan(limits.plan_of(team_id), "", interval, tuple(regions or ()))
    return monitors.update(
        team_id,
        monitor_id,
        changes,
        all_regions,
        now,
        check_channels=_team_channels(team_id),
        check_target=check_target,
    )


def _team_channels(team_id: str) -> Callable[[tuple[str, ...]], None]:
    """The check a monitor's ``channel_ids`` pass: every one an alert channel of the team (404 naming the first
    that is not)."""
    return functools.partial(channels.require_team_channels, team_id)


def set_monitor_paused(team_id: str, monitor_id: str, paused: bool, now: datetime) -> monitors.Monitor:
    """Pause or resume.

    1. The monitor leaves (or rejoins) the schedule in the same write.
    2. The incident handler ends its outage (paused: no check could ever resolve it) — even if it already was
       paused: a step that failed the first time gets another go — or, resumed from a pause, starts its state
       afresh.  Resuming a monitor that was not paused changes nothing: its outage, if any, goes on.
    3. The monitor is returned as the incident handler left it.

    An active monitor counts against the plan: a resume beyond its limit is refused (402), in the same write.
    """
    monitor, was_paused = monitors.set_paused(team_id, monitor_id, paused, now, counter=_monitor_counter(team_id))
    if paused or was_paused:
        tracker.pause_changed(monitor, now)
    return monitors.get(team_id, monitor_id)


def delete_monitor(team_id: str, monitor_id: str, now: datetime) -> None:
    """Delete a monitor.

    1. The monitor goes first, so that no late result can bring its incident state back.
    2. Its open incident resolves (machines told of the outage are told it ended) and its state goes.
    3. It leaves every status page that showed it; those pages republish.
    """
    monitor = monitors.delete(team_id, monitor_id, counter=_monitor_counter(team_id))
    tracker.forget_monitor(monitor, now)
    status_pages.forget_monitor(team_id, monitor_id, now)


def list_results(
    team_id: str,
    monitor_id: str,
    *,
    region: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: str | None,
    now: datetime,
) -> tuple[list[CheckResult], str | None]:
    """A monitor's results as its team's plan keeps them: none older than its retention (the plan's, read now: a
    downgraded team sees its new plan's days at once, though what was stored expires as it was written)."""
    oldest = now - limits.result_retention(team_id)
    return results.list_results(
        team_id, monitor_id, region=region, since=since, until=until, limit=limit, after=after, oldest=oldest
    )


# --------------------------------------------------------------------------------------------- channels


def delete_channel(team_id: str, channel_id: str) -> None:
    """The channel goes, then every monitor of the team that named it forgets it."""
    channels.delete(
        team_id, channel_id, counter=limits.uncount(team_id, "alert_channels", lambda: channels.count(team_id))
    )
    monitors.unlink_channel(team_id, channel_id)


# --------------------------------------------------------------------------------------------- maintenance


def create_window(team_id: str, user_id: str, fields: dict[str, Any], now: datetime) -> maintenance.Window:
    window = maintenance.create(team_id, user_id, fields, now)
    _sync_maintenance(team_id, set(window.monitor_ids), now, window.id, window)
    _republish_quietly(team_id, set(window.monitor_ids))
    return window


def update_window(team_id: str, window_id: str, changes: dict[str, Any], now: datetime) -> maintenance.Window:
    """The pages of the monitors it named before and names now show the change."""
    before, after = maintenance.update(team_id, window_id, changes, now)
    _sync_maintenance(team_id, set(before.monitor_ids) | set(after.monitor_ids), now, window_id, after)
    _republish_quietly(team_id, set(before.monitor_ids) | set(after.monitor_ids))
    return after


def delete_window(team_id: str, window_id: str, now: datetime) -> None:
    window = maintenance.delete(team_id, window_id)
    _sync_maintenance(team_id, set(window.monitor_ids), now, window_id, None)
    _republish_quietly(team_id, set(window.monitor_ids))


def _sync_maintenance(
    team_id: str, monitor_ids: set[str], now: datetime, changed: str, window: maintenance.Window | None
) -> None:
    """Each monitor the change touched carries the spans of all its windows not ended, read after the change (the
    changed ``window`` as written, None once deleted: the index read is a moment behind), and is in maintenance
    now exactly when one of them covers it: a window already running when made, cut short or deleted is entered
    or left at once (``incidents.state.maintenance_edge``), as its edges are on the tick.

    Two changes racing for one monitor can leave its spans one change behind until the next: then only the
    status label ``maintenance`` waits for a result the worker marks anyway (a failure), since the incident handler
    reads the windows themselves before it opens anything."""
    windows = [w for w in maintenance.not_ended(team_id, now) if w.id != changed]
    windows += [window] if window is not None and window.ends_at > now else []
    spans: dict[str, list[tuple[datetime, datetime]]] = {m: [] for m in monitor_ids}
    for found in windows:
        for monitor_id in set(found.monitor_ids) & monitor_ids:
            spans[monitor_id].append(found.span)
    monitors.set_maintenance(team_id, spans)
    crossing = {(team_id, m): [(now, maintenance.covering(windows, m, now))] for m in sorted(monitor_ids)}
    if edges.report_failures(tracker.cross_maintenance(crossing, now), changed):
        # The change stands; a monitor left behind crosses with its next result, or its window's next edge.
        metrics.add_metric(name="MaintenanceEdgeFailures", unit="Count", value=1)


def _republish_quietly(team_id: str, monitor_ids: set[str]) -> None:
    """A maintenance window changed: the pages showing its monitors show it (best effort, logged)."""
    try:
        publish.republish_for(team_id, monitor_ids)
    except Exception:  # noqa: BLE001 - the window change stands; the next change publishes again
        logger.exception("status page publishing failed", extra={"team_id": team_id})


# --------------------------------------------------------------------------------------------- teams


def delete_team(actor: str, team_id: str) -> None:
    """Delete a team and all its data.  A user's last team cannot go (409): everyone keeps a team to act in."""
    teams.require_another_team(actor)
    _purge_team(team_id)


def _purge_team(team_id: str) -> None:
    """1. Incidents first: their purge needs the team's monitors, to forget their incident state.
    2. Maintenance windows, alert channels, status pages (unpublished), then the monitors themselves.
    3. Last, the team with its counters, API keys, members and invitations."""
    incidents.purge_team(team_id, monitors.team_monitor_ids(team_id))
    maintenance.purge_team(team_id)
    channels.purge_team(team_id)
    status_pages.purge_team(team_id)
    monitors.purge_team(team_id)
    limits.forget_team(team_id)
    apikeys.purge_team(team_id)
    teams.delete_team(team_id)


# --------------------------------------------------------------------------------------------- billing


def usage(team_id: str, now: datetime) -> dict[str, int]:
    """What the plan's counted limits measure, counted now."""
    return {
        "monitors": monitors.count_active(team_id),
        "status_pages": status_pages.count(team_id),
        "alert_channels": channels.count(team_id),
        "members": count_members(team_id, now),
    }


def count_members(team_id: str, now: datetime) -> int:
    """Members and pending invitations: what the plan's ``members`` limit counts."""
    return len(teams.member_ids(team_id)) + len(invitations.list_pending(team_id, now))


def invite(team_id: str, inviter_id: str, email: str, role: str, now: datetime) -> invitations.Invitation:
    """An invitation, counted against the plan's members (402); one it replaces (the same address) counted out."""

    def count_now() -> int:
        return count_members(team_id, now)

    return limits.admit(
        team_id,
        "members",
        count_now,
        lambda c: invitations.invite(
            team_id, inviter_id, email, role, now, counter=c, uncounter=limits.uncount(team_id, "members", count_now)
        ),
        repair=lambda: (
            invitations.release_expired(team_id, now, lambda: limits.uncount(team_id, "members", count_now)) > 0
        ),
    )


def revoke_invitation(team_id: str, invitation_id: str, now: datetime) -> None:
    counter = limits.uncount(team_id, "members", lambda: count_members(team_id, now))
    invitations.revoke(team_id, invitation_id, now, counter=counter)


def remove_member(actor: str, actor_role: str, team_id: str, user_id: str, now: datetime) -> None:
    """A member removed (or leaving) frees a place of the plan's members."""
    counter = limits.uncount(team_id, "members", lambda: count_members(team_id, now))
    teams.remove_member(actor, actor_role, team_id, user_id, counter=counter)


def receive_stripe_event(event: dict[str, Any], now: datetime) -> str:
    """Apply a verified Stripe event once (``billing.service``), then settle what it changed: a lower plan's
    limits applied to the team's monitors, and the owner told (a downgrade, a failed payment)."""
    outcome, change = billing.receive(event, now)
    if change is not None:  # applied now, or applied before and not settled then (Stripe's retry settles it)
        settle_plan(change, now)
        billing.mark_settled(str(event["id"]))
    return outcome


def settle_plan(change: billing.Change, now: datetime) -> None:
    """A downgrade keeps all data: the monitors over the new limit are paused (the most recently created first),
    intervals and regions lowered to what it allows; the owner gets one email saying what changed."""
    lines: list[str] = []
    if plans.RANK[change.after] < plans.RANK[change.before]:
        limits = plans.plan(change.after).limits
        active = monitors.newest_active(change.team_id)
        for monitor in active[: max(0, len(active) - limits.monitors)]:
            set_monitor_paused(change.team_id, monitor.id, True, now)
            lines.append(f"{monitor.config.name}: paused (the {change.after} plan has {limits.monitors} monitors)")
        regions = get_settings().check_regions
        for monitor, said in monitors.fit_to_plan(
            change.team_id,
            min_interval=limits.min_interval_seconds,
            max_regions=limits.regions,
            all_regions=regions,
            now=now,
        ):
            lines.append(f"{monitor.config.name}: {'; '.join(said)}")
    if lines or change.payment_failed or change.after != change.before:
        _tell_owner(
            change.team_id,
            plan_changed(
                get_settings().app_url, change.before, change.after, lines, payment_failed=change.payment_failed
            ),
        )


def _tell_owner(team_id: str, email: Email) -> None:
    owner = next((m for m in teams.list_members(team_id) if m.role == "owner"), None)
    user = users.find(owner.user_id) if owner else None
    if user is not None:
        deliver(user.email, email, team_id=team_id)


# ------------------------------------------------------------------------------------------------ onboarding

ONBOARDING_STEPS = ("verify_email", "create_monitor", "add_alert_channel", "create_status_page", "invite_teammate")


def onboarding(user_id: str, team_id: str, now: datetime) -> list[tuple[str, bool]]:
    """The five first steps, each done or not from what exists now in the user's account and current team (no
    stored flag that could drift: a step undone — the monitor deleted — shows as to do again)."""
    done = {
        "verify_email": users.get_user(user_id).email_verified,
        "create_monitor": bool(monitors.team_monitor_ids(team_id)),
        "add_alert_channel": channels.count(team_id) > 0,
        "create_status_page": status_pages.count(team_id) > 0,
        "invite_teammate": count_members(team_id, now) > 1,
    }
    return [(step, done[step]) for step in ONBOARDING_STEPS]


# --------------------------------------------------------------------------------------------- accounts


def delete_account(user_id: str, password: str, now: datetime) -> None:
    """Erase a user (``DELETE /v1/me``), once ``password`` is theirs.

    1. The owner of a team with other members cannot go (409 naming the teams): ownership is transferred first; nor
       can a user alone in a team whose subscription renews (409): it is cancelled in billing first, or Stripe would
       go on charging someone who can no longer reach it.
    2. The user is marked as being deleted: from then on no team is created for them, no invitation accepted and
       no team handed to them (:func:`users.check_joinable`); the pending invitations of the teams they are alone
       in are withdrawn (nobody joins a team about to go); then step 1 is checked again on consistent reads, and a
       refusal now takes the mark back.  If anything below fails, a sign-in with the password or a sign-up with the
       address finishes it.
    3. :func:`finish_deletion`.
    """
    auth.confirm_password(user_id, password, "password", now)
    _refuse_while_bound(user_id)
    mark = users.mark_deleting(user_id, now)
    try:
        for team_id in _refuse_while_bound(user_id):
            for invitation in invitations.list_pending(team_id, now):
                _withdraw(team_id, invitation.id, now)
        _refuse_while_bound(user_id)
    except errors.Conflict:
        users.unmark_deleting(user_id, mark)
        raise
    finish_deletion(user_id, now)


def _refuse_while_bound(user_id: str) -> list[str]:
    """409 while the user owns a team others belong to, or is alone in one whose subscription renews (roles and
    members read consistently: a transfer or a join a moment ago counts); else the teams the user is alone in."""
    owned, paying, alone = [], [], []
    for team, _ in teams.list_teams(user_id):
        members = teams.member_ids(team.id, consistent=True)
        if members == [user_id]:
            alone.append(team.id)
            if _subscribed(team.id):
                paying.append(team)
        elif teams.role_of(team.id, user_id) == "owner":
            owned.append(team)
    if owned:
        names = ", ".join(f'"{team.name}"' for team in owned)
        raise errors.Conflict(f"You own {names}, which others belong to: transfer ownership first, then delete.")
    if paying:
        names = ", ".join(f'"{team.name}"' for team in paying)
        raise errors.Conflict(
            f"{names} has a subscription that renews: cancel it in billing first (it ends with its period), "
            "then delete."
        )
    return alone


def finish_deletion(user_id: str, now: datetime) -> None:
    """The erasure of a user marked as being deleted; every step may run again, or at once with another run of it
    (what is gone already is done).

    1. Each team the user is alone in is deleted with everything in it (monitors stop at once, pages unpublished).
    2. Each other team is left: the API keys the user made there are revoked and the invitations they sent that
       are still pending withdrawn, then the membership goes (a place of the plan freed).
    3. Pending invitations to the user's address are withdrawn: a new sign-up with it starts with none.
    4. The account: sessions, the user and the claim on the address (free for a new sign-up).
    5. A last look for a membership that joined just before the mark (the index behind ``list_teams`` lags a write
       by a moment; after the mark nothing joins).
    """
    try:
        email: str | None = users.load(user_id).email
    except errors.NotFound:
        email = None  # erased already: only the last look is left
    if email is not None:
        _leave_every_team(user_id, now)
        for invitation in invitations.pending_to(email, now):
            _withdraw(invitation.team_id, invitation.id, now)
        auth.erase_user(user_id)
        logger.info("account deleted", extra={"user_id": user_id})
    _leave_every_team(user_id, now)


def follow_email_link(token: str, now: datetime) -> users.User:
    """A link mailed to an address (``auth.verify_email``).  When it moved the account to a new address, the
    pending invitations to the address it left are withdrawn: that address is free, and whoever signs up with it
    next must not find a place meant for this person."""
    verified = auth.verify_email(token, now)
    if verified.left is not None:
        for invitation in invitations.pending_to(verified.left, now):
            _withdraw(invitation.team_id, invitation.id, now)
    return verified.user


def forgot_password(email: str, now: datetime) -> None:
    """``POST /v1/auth/forgot-password``: the same work whether the address has an account or not (one message on
    the alerts queue), so its time cannot tell; the alert deliveries handler looks the address up and mails a
    link (``auth.send_password_reset``).  Not an address at all: nothing to do."""
    try:
        email = auth.normalize_email(email)
    except errors.ValidationFailed:
        return
    alert_queue.enqueue(alert_queue.PasswordReset(email, now))


def reset_password(token: str, password: str, client_ip: str, now: datetime) -> None:
    """A reset link followed (``auth.reset_password``).  When it took back an account whose address was never
    verified, what was made in it before is cleared at once (:func:`_clear_before_reclaim`)."""
    reset = auth.reset_password(token, password, client_ip, now)
    if reset.reclaiming_team_id is not None:
        _clear_before_reclaim(reset.user_id, reset.reclaiming_team_id, now)


def finish_reclaim(user_id: str, now: datetime) -> None:
    """The first sign-in after a reset took an account back: a last look (the index behind ``list_teams`` lags a
    write by a moment, and the reset's own pass may have failed half-way), then sign-ins stop looking."""
    fresh = users.load(user_id).reclaiming_team_id
    if fresh is None:
        return  # finished meanwhile by another sign-in
    _clear_before_reclaim(user_id, str(fresh), now)
    auth.end_reclaim(user_id, str(fresh))


def _clear_before_reclaim(user_id: str, fresh_team_id: str, now: datetime) -> None:
    """Whoever signed up with an address and never verified it keeps nothing once its owner resets the password
    (the reset has ended every session and reset the profile).  Every step may run again.

    1. The API keys of every team the account owns are deleted first: they act as the account, whoever made them.
    2. The account's fresh personal team is made (the reset made it the current team).
    3. Every other team the account owns is purged as a team delete purges it: members, pending invitations,
       monitors, channels, status pages, incidents, maintenance windows (a subscription is logged for support:
       Vigil never cancels one itself).
    4. A team the account only belongs to (none can, unverified, today) is left as a deletion leaves it.

    Every session made before is ended again first: the reset's own revocation may have failed half-way."""
    auth.revoke_user_sessions(user_id, "password_reset", now)
    found = [(team, role) for team, role in teams.list_teams(user_id) if team.id != fresh_team_id]
    for team, role in found:
        if role == "owner":
            apikeys.purge_team(team.id)
    teams.create_personal_team(fresh_team_id, user_id, "Personal team", now)
    for team, role in found:
        try:
            if role != "owner":
                _leave_team(user_id, role, team.id, now)
                continue
            if _subscribed(team.id):
                logger.warning("a reclaimed account's team with a subscription is purged", extra={"team_id": team.id})
            _purge_team(team.id)
        except errors.NotFound:
            continue  # gone meanwhile (another run of this)
    logger.info("account reclaimed by a reset", extra={"user_id": user_id, "teams_cleared": len(found)})


def _withdraw(team_id: str, invitation_id: str, now: datetime) -> None:
    with contextlib.suppress(errors.NotFound):  # answered or withdrawn meanwhile
        revoke_invitation(team_id, invitation_id, now)


def _leave_every_team(user_id: str, now: datetime) -> None:
    for team, role in teams.list_teams(user_id):
        try:
            if teams.member_ids(team.id, consistent=True) == [user_id]:
                _purge_team(team.id)
                continue
            _leave_team(user_id, role, team.id, now)
        except errors.NotFound:
            continue  # the team or the membership went meanwhile (another run of this, or the team deleted)


def _leave_team(user_id: str, role: str, team_id: str, now: datetime) -> None:
    """What the user did in the team goes before the user: their keys, and invitations nobody answered yet."""
    apikeys.revoke_made_by(team_id, user_id, now)
    for invitation in invitations.list_pending(team_id, now):
        if invitation.invited_by == user_id:
            _withdraw(team_id, invitation.id, now)
    remove_member(user_id, role, team_id, user_id, now)


def _subscribed(team_id: str) -> bool:
    """A subscription Stripe would go on charging: paying, and not set to end with its period."""
    state = billing.get_billing(team_id)
    return state.plan in plans.PAID and state.status in billing.PAYING and not state.cancel_at_period_end
