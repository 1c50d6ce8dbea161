"""Monitor tables: monitors (by team), check results (packed: packs by bucket, periods by monitor), the check
pipeline's progress, and rollups."""

from __future__ import annotations

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection

from chalicelib.storage.base import BaseModel


class MonitorsBySchedule(GlobalSecondaryIndex["MonitorModel"]):
    """The scheduler's index: ``schedule_key`` = ``<interval_seconds>:<phase>``; absent while paused (sparse)."""

    class Meta:
        index_name = "schedule-index"
        projection = AllProjection()

    schedule_key = UnicodeAttribute(hash_key=True)
    monitor_id = UnicodeAttribute(range_key=True)


class MonitorsById(GlobalSecondaryIndex["MonitorModel"]):
    """A monitor's team from its id alone (public badges).  Keys only: status writes never touch it."""

    class Meta:
        index_name = "monitor-index"
        projection = KeysOnlyProjection()

    monitor_id = UnicodeAttribute(hash_key=True)


class MonitorsByDeadline(GlobalSecondaryIndex["MonitorModel"]):
    """The active heartbeat monitors by deadline (``monitors.heartbeats``): ``due_shard`` (one of a few, so pings
    spread their index writes) and ``due_at`` (epoch seconds).  Sparse: absent while paused, and for every other
    type; keys only, so the tick reads about a hundred bytes per monitor due, and nothing of the others."""

    class Meta:
        index_name = "due-index"
        projection = KeysOnlyProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class MonitorModel(BaseModel):
    logical_name = "monitors"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    monitor_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    type = UnicodeAttribute(null=True)  # absent: "http" (every monitor written before types)
    url = UnicodeAttribute(null=True)  # http
    host = UnicodeAttribute(null=True)  # tcp
    port = NumberAttribute(null=True)  # tcp
    tls = BooleanAttribute(null=True)  # tcp
    # heartbeat (``monitors.heartbeats``): its period is ``interval_seconds``; the token its pings name (looked up
    # in ``PingTokenModel``); when its current wait began (the last ping, its creation or resume) and when it ends;
    # the last ping or fail, the start of a run not finished, and what orders and counts its results.
    grace_seconds = NumberAttribute(null=True)
    ping_token = UnicodeAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)
    due_at = NumberAttribute(null=True)
    due_from = UTCDateTimeAttribute(null=True)
    last_ping_at = UTCDateTimeAttribute(null=True)
    started_at = UTCDateTimeAttribute(null=True)
    missed_at = NumberAttribute(null=True)  # the last miss while down (cleared by a ping or fail)
    counted_window = NumberAttribute(null=True)
    failed_window = NumberAttribute(null=True)  # the period window whose failure was last counted
    last_result_at = NumberAttribute(null=True)  # the slot (epoch seconds) of the last result written
    last_start_at = UTCDateTimeAttribute(null=True)  # the last /start recorded (its own throttle)
    method = UnicodeAttribute(default="GET")
    headers = MapAttribute[str, str](default=dict)
    body = UnicodeAttribute(null=True)
    interval_seconds = NumberAttribute()
    timeout_ms = NumberAttribute()
    regions = ListAttribute(of=UnicodeAttribute)
    expected_status = ListAttribute(of=UnicodeAttribute)
    follow_redirects = BooleanAttribute(default=True)
    verify_ssl = BooleanAttribute(default=True)
    assertions = JSONAttribute(default=list)
    degraded_after_ms = NumberAttribute(null=True)
    ssl_expiry_alert_days = NumberAttribute(default=14)
    failure_threshold = NumberAttribute(default=2)
    recovery_threshold = NumberAttribute(default=1)
    confirmation_regions = NumberAttribute()
    channel_ids = ListAttribute(of=UnicodeAttribute, default=list)
    tags = ListAttribute(of=UnicodeAttribute, default=list)
    paused = BooleanAttribute(default=False)
    status = UnicodeAttribute(default="pending")
    region_status = MapAttribute[str, str](default=dict)
    # Regions down below the confirmation quorum: [{region, since, cause}] (written by the incident handler).
    advisories = JSONAttribute(default=list)
    state_version = NumberAttribute(null=True)  # the incident state these status fields show (newer wins)
    # For the worker's marking (``checks.marking``): the regions the incident handler last saw checked, up and
    # with no failure counted (written by it), and the [start, end) of each maintenance window not ended
    # (written with the windows, ``lifecycle``).
    steady_regions = ListAttribute(of=UnicodeAttribute, default=list)
    maintenance = JSONAttribute(default=list)
    last_checked_at = UTCDateTimeAttribute(null=True)
    schedule_key = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()
    by_schedule = MonitorsBySchedule()
    by_id = MonitorsById()
    by_deadline = MonitorsByDeadline()


class PingTokenModel(BaseModel):
    """A heartbeat monitor's ping token → the monitor (``/v1/ping/{token}``): one item per token in use, written in
    the same transaction as the monitor's own ``ping_token`` (a table, not an index of the monitors: read
    consistently, a rotated token is refused at once; and the monitors table gained its deadline index in the same
    change, while a deploy may add only one index to a table)."""

    logical_name = "heartbeat_tokens"

    class Meta:
        pass

    token = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute()
    monitor_id = UnicodeAttribute()


class PingModel(BaseModel):
    """A heartbeat monitor's pings as received (``/v1/ping/{token}``): when, which kind, from where, and what it
    said (an excerpt of its body).  What the monitor's status follows is in its results; this is the log a user
    reads to see which run pinged.  Kept :data:`monitors.heartbeats.PING_KEEP`."""

    logical_name = "heartbeat_pings"

    class Meta:
        point_in_time_recovery = False  # a log of weeks, kept by TTL

    monitor_id = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)  # ``<received, to the microsecond>#<kind>``
    team_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # "ping", "start" or "fail"
    source_ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    body = UnicodeAttribute(null=True)  # at most PING_BODY_KEEP bytes of the request body, as text
    expires_at = TTLAttribute()


class PackModel(BaseModel):
    """One region's checks of one bucket of monitors in one minute, packed (``monitors.packs``): written by the
    check worker, regrouped per monitor by the aggregator, read for a monitor's most recent results."""

    logical_name = "result_packs"

    class Meta:
        stream_view_type = "NEW_IMAGE"
        point_in_time_recovery = False  # a staging area of days: the periods and rollups are what is kept

    bucket = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)  # <minute>#<region>#<writer>
    body = BinaryAttribute(legacy_encoding=False)
    checks = NumberAttribute()  # how many results the body holds
    # Set only when true, so that the event source mappings' filters can test them: a result the incident handler
    # must see (``checks.marking``); written after its period was aggregated (re-aggregated on its own).
    marked = BooleanAttribute(null=True)
    late = BooleanAttribute(null=True)
    expires_at = TTLAttribute()


class PeriodModel(BaseModel):
    """One monitor's checks of one period (every region), packed: what ``GET /v1/monitors/{id}/results`` reads
    once the aggregator has taken the period (its packs before that)."""

    logical_name = "result_periods"

    class Meta:
        # Telemetry kept for the plan's retention (TTL): backing it up continuously would cost about as much as
        # storing it.  What must outlive a restore is counted in the rollups and told by the incidents.
        point_in_time_recovery = False

    monitor_id = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)  # its start, ``2026-12-06T14:10``
    team_id = UnicodeAttribute()
    body = BinaryAttribute(legacy_encoding=False)
    checks = NumberAttribute()  # how many results the body holds
    expires_at = TTLAttribute()


class ProgressModel(BaseModel):
    """How far the check pipeline got, one small item per name: ``checks#<region>``, the latest minute whose
    check message a worker of that region finished (every result stored: a monitor's ``last_checked_at`` is its
    latest planned start up to there); ``aggregated``, the end of the last period the aggregator took."""

    logical_name = "check_progress"

    class Meta:
        point_in_time_recovery = False  # rewritten every minute; nothing to restore

    name = UnicodeAttribute(hash_key=True)
    through = UTCDateTimeAttribute()
    # ``cpu#<region>#<hour>`` (``monitors.workload``): the CPU its workers measured over their checks of that hour,
    # added to by each message.  ``size#<region>``: the worker's memory the scheduler set, and the peak it planned
    # for.  Neither has ``through``: both are only ever updated, never saved whole.
    cpu_ms = NumberAttribute(null=True)
    checks = NumberAttribute(null=True)
    memory_mb = NumberAttribute(null=True)
    previous_mb = NumberAttribute(null=True)
    changed_at = UTCDateTimeAttribute(null=True)
    measured = BooleanAttribute(null=True)
    peak = NumberAttribute(null=True)
    peak_hour = UnicodeAttribute(null=True)
    last_peak = NumberAttribute(null=True)


class ChangeModel(BaseModel):
    """A note that a monitor was written (``monitors.watching``): the check worker trusts what the tick read of a
    monitor unless a note names it, so it reads again only the few monitors changed since.  One small item per
    write, by minute, kept an hour."""

    logical_name = "monitor_changes"

    class Meta:
        point_in_time_recovery = False  # notes for the next minutes' checks; nothing to restore
        # A note must land within the feed's overlap of its stamp (``watching.OVERLAP``), or not at all (a lost
        # note is tolerated; a late one would be missed): (1 + 1 retry) x (1 s + 2 s) = 6 s at worst.
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        max_retry_attempts = 1

    minute = UnicodeAttribute(hash_key=True)  # ``2026-12-06T14:10``
    key = UnicodeAttribute(range_key=True)  # ``<when, to the microsecond>#<team_id>#<monitor_id>``
    expires_at = TTLAttribute()


class RollupModel(BaseModel):
    """Per monitor: one item a day (``D#2026-11-30``) and one an hour (``H#2026-11-30T14``), computed from the
    packed checks by the aggregator (``monitors.aggregate``), so uptime over 24 h … 90 d reads at most ~140 small
    items and never the checks themselves.  A day's item is written once the day is over; until then readers sum
    its hours.  Beside them, a bucket's *roster* of a day, in parts (``roster#<bucket>#<part>``, ``D#<day>``): the
    monitors it had checks of, whose days the aggregator writes at the day's end (``monitors``, gzipped JSON)."""

    logical_name = "rollups"

    class Meta:
        pass

    monitor_id = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    team_id = UnicodeAttribute()
    checks = NumberAttribute(default=0)
    # The counters below are written only when not zero (``monitors.rollups``), and read as 0 when absent.
    failures = NumberAttribute(default=0, null=True)
    latency_sum_ms = NumberAttribute(default=0, null=True)
    latency_count = NumberAttribute(default=0, null=True)
    # Latency histogram: checks whose response time was at most N ms (top-level numbers, so ADD works on them).
    le_100 = NumberAttribute(default=0, null=True)
    le_250 = NumberAttribute(default=0, null=True)
    le_500 = NumberAttribute(default=0, null=True)
    le_1000 = NumberAttribute(default=0, null=True)
    le_2500 = NumberAttribute(default=0, null=True)
    le_5000 = NumberAttribute(default=0, null=True)
    le_10000 = NumberAttribute(default=0, null=True)
    le_inf = NumberAttribute(default=0, null=True)
    monitors = BinaryAttribute(null=True, legacy_encoding=False)  # a roster's
    expires_at = TTLAttribute()


HISTOGRAM_BOUNDS = (100, 250, 500, 1000, 2500, 5000, 10000)
