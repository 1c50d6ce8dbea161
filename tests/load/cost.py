"""What a check costs on AWS: one table of unit prices, AWS's billing arithmetic, and the table ``make bench`` prints.

Pure: a bench counts what a run did (``tests/load/meter.py`` fills a :class:`Run` with every AWS request and
Lambda invocation) and :func:`cost_lines` prices it per check.  Each line says whether its quantity per check was
measured in the run or modelled (and how), so a figure that says "measured" comes from the run's counters.

1. Lambda: billed duration (each invocation rounded up to 1 ms) x the function's memory, priced by its
   architecture; one request per invocation.  Memory, architecture and tracing come from the deploy templates
   (``.chalice/config.json`` through Chalice's own resolver, ``infra/checker.json``).
2. DynamoDB on-demand: a write is 1 WRU per started KB of the larger of the item's old and new size (at least 1),
   twice in a transaction; each global secondary index whose entry is added, removed or changed is written too
   (a key change is a delete and a put).  A read is 1 RRU per started 4 KB strongly consistent, half that
   eventually consistent, twice in a transaction; a Query or Scan rounds the page's total, not each item.
3. Storage: the results table from the run (new items per check, their size + DynamoDB's 100 bytes of overhead,
   their TTL); rollups and the per-monitor items from their measured sizes and how many a monitor keeps.
4. SQS: one request per 64 KB chunk of payload.  Streams read by Lambda are free.  Data crossing regions is
   charged by its source region; internet egress (the checks' own requests) is reported apart.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
MAIN_TEMPLATE = ROOT / "infra" / "resources.json"
CHECKER_TEMPLATE = ROOT / "infra" / "checker.json"
DEPLOYED_STAGE = "prod"
CHECKER = "checker"  # the regional worker; the local stack names each region's copy checker-<region>
POLLER = "poller:"  # a Lambda event source mapping's own requests (reading a queue or a stream)

KB = 1024
READ_UNIT_BYTES = 4 * KB
SQS_CHUNK_BYTES = 64 * KB
ITEM_OVERHEAD_BYTES = 100  # DynamoDB's per-item (and per index entry) storage overhead
GB = 1024**3  # AWS bills storage, logs and transfer in binary gigabytes
MONTH_HOURS = 730  # AWS's month for monthly prices
MONTH_DAYS = MONTH_HOURS / 24
PRICES_TAKEN = "2026-12-06"  # us-east-1, on-demand, from the public price pages on this date


@dataclass(frozen=True)
class Price:
    usd: float
    per: float  # how many units ``usd`` buys
    unit: str
    what: str

    @property
    def per_unit(self) -> float:
        return self.usd / self.per


# One table of unit prices: us-east-1, on-demand, no free tier, as of PRICES_TAKEN.
PRICES: dict[str, Price] = {
    "lambda_gb_s_x86_64": Price(0.0000166667, 1, "GB-s", "Lambda duration, x86_64 (first tier)"),
    "lambda_gb_s_arm64": Price(0.0000133334, 1, "GB-s", "Lambda duration, arm64 (first tier)"),
    "lambda_request": Price(0.20, 1e6, "request", "Lambda invocations"),
    "dynamodb_wru": Price(0.625, 1e6, "WRU", "DynamoDB on-demand write request unit: 1 KB, x2 transactional"),
    "dynamodb_rru": Price(0.125, 1e6, "RRU", "DynamoDB on-demand read request unit: 4 KB strong, 1/2 eventual"),
    "dynamodb_storage": Price(0.25, 1, "GB-month", "DynamoDB Standard table class storage"),
    "dynamodb_pitr": Price(0.20, 1, "GB-month", "DynamoDB point-in-time recovery (continuous backups)"),
    "dynamodb_stream_read_lambda": Price(0.0, 1, "GetRecords", "DynamoDB Streams read by a Lambda trigger: free"),
    "dynamodb_control": Price(0.0, 1, "request", "DynamoDB and Streams control plane (Describe*, List*): free"),
    "sqs_request": Price(0.40, 1e6, "request", "SQS standard request, each 64 KB chunk of payload one"),
    "s3_put": Price(0.005, 1e3, "request", "S3 Standard PUT, COPY, POST, LIST"),
    "s3_get": Price(0.0004, 1e3, "request", "S3 Standard GET and all other requests"),
    "eventbridge_event": Price(1.00, 1e6, "event", "EventBridge custom event / Scheduler invocation (a tick)"),
    "logs_ingest": Price(0.50, 1, "GB", "CloudWatch Logs ingestion (standard class, first tier)"),
    "xray_trace": Price(5.00, 1e6, "trace", "X-Ray traces recorded"),
    "ses_email": Price(0.10, 1e3, "email", "SES outbound email, per recipient"),
    "kms_request": Price(0.03, 1e4, "request", "KMS symmetric key request (Decrypt, GenerateDataKey)"),
    "transfer_region": Price(0.02, 1, "GB", "Data transfer to another AWS region (us-east-1's rate as source)"),
    "transfer_internet": Price(0.09, 1, "GB", "Data transfer out to the internet (first 10 TB a month)"),
    "unpriced": Price(0.0, 1, "request", "a request of a kind this model does not price (listed, never hidden)"),
}

# DESIGN.md, "Money per check": the budget per million checks, excluding internet egress.
BUDGET: dict[str, float] = {
    "checker": 0.12,
    "stored results": 0.05,
    "rollups": 0.02,
    "incident tracking": 0.03,
    "the rest": 0.03,
}

# Lambda's platform lines per invocation (their documented formats, with a typical request id and figures).
PLATFORM_LINES = (
    "START RequestId: 3f2a9c1e-7b4d-4e8a-9f01-5c6d7e8f9a0b Version: $LATEST\n",
    "END RequestId: 3f2a9c1e-7b4d-4e8a-9f01-5c6d7e8f9a0b\n",
    "REPORT RequestId: 3f2a9c1e-7b4d-4e8a-9f01-5c6d7e8f9a0b\tDuration: 1234.56 ms\tBilled Duration: 1235 ms\t"
    "Memory Size: 1769 MB\tMax Memory Used: 123 MB\t\n",
)
XRAY_LINE = "XRAY TraceId: 1-675231a2-3b6f0c1d2e3f4a5b6c7d8e9f\tSegmentId: 1a2b3c4d5e6f7a8b\tSampled: true\t\n"
# A check's request to its target over a fresh connection, beyond what the target reads: the client's
# TCP/IP headers (IPv4 20 + TCP 20 + timestamps 12 bytes) on about 8 segments (SYN, ACKs, hello, finished,
# request, FIN).
TCP_IP_HEADER_BYTES = 52
CLIENT_SEGMENTS_PER_CHECK = 8
# Active tracing samples Lambda invocations by X-Ray's default rule: the first each second, and 5 % of the rest.
XRAY_RESERVOIR_PER_S = 1
XRAY_RATE = 0.05
# Lambda's SQS event source polls an idle queue with five long-polling connections, each waiting 20 s.
SQS_POLLERS = 5
SQS_LONG_POLL_S = 20


# ---------------------------------------------------------------------------------------------- DynamoDB sizes


def attribute_size(value: dict[str, Any]) -> int:
    """An attribute value's size by DynamoDB's rules (its name is counted by the caller)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(str(inner).encode())
    if kind == "B":
        return len(inner) if isinstance(inner, bytes) else len(str(inner).encode())
    if kind == "N":
        digits = str(inner).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in inner)
    if kind == "NS":
        return sum(attribute_size({"N": v}) for v in inner)
    if kind == "BS":
        return sum(attribute_size({"B": v}) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    raise ValueError(f"not a DynamoDB attribute value: {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    """An item's size (DynamoDB JSON): names plus values; 0 for no item."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(old: int, new: int, *, transactional: bool = False) -> int:
    """WRUs of one item write: 1 per started KB of the larger of its old and new size, at least 1; x2 in a
    transaction.  A delete has ``new`` 0; a failed condition still pays for the item it read."""
    units = max(1, math.ceil(max(old, new) / KB))
    return 2 * units if transactional else units


def index_write_units(size: int) -> int:
    """WRUs of one write to a global secondary index (a put or a delete of an entry of ``size`` bytes)."""
    return max(1, math.ceil(size / KB))


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    """RRUs of reading ``size`` bytes (an item, or a Query page's items together), at least one unit's worth."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def sqs_units(payload: int) -> int:
    """SQS requests billed for one API call carrying ``payload`` bytes of messages: one per started 64 KB."""
    return max(1, math.ceil(payload / SQS_CHUNK_BYTES))


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    name: str  # logical name (the table's name without the stage's prefix)
    keys: tuple[str, ...]
    indexes: tuple[Index, ...] = ()
    ttl: str | None = None
    pitr: bool = False

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys}

    def index_entry(self, item: dict[str, Any] | None, index: Index) -> dict[str, Any] | None:
        """The item's entry in ``index`` (None when the item lacks one of the index's keys: a sparse index)."""
        if not item or any(k not in item for k in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        wanted = {*index.keys, *self.keys, *(index.include if index.projection == "INCLUDE" else ())}
        return {k: v for k, v in item.items() if k in wanted}


def index_writes(
    table: TableSchema, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> tuple[tuple[str, int], ...]:
    """The index writes one item write causes, as (index, entry size): an entry added or removed is one write,
    a changed key two (delete the old, put the new), a changed projected attribute one; no change, none."""
    out: list[tuple[str, int]] = []
    for index in table.indexes:
        before, after = table.index_entry(old, index), table.index_entry(new, index)
        if (before is None and after is None) or before == after:
            continue
        if before is None or after is None:
            out.append((index.name, item_size(before or after)))
        elif any(before[k] != after[k] for k in index.keys):
            out += [(index.name, item_size(before)), (index.name, item_size(after))]
        else:
            out.append((index.name, item_size(after)))
    return tuple(out)


def table_schemas(template: dict[str, Any]) -> dict[str, TableSchema]:
    """Every table of a CloudFormation template (``infra/resources.json``), by logical name."""
    tables = {}
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        name = props["TableName"]["Fn::Sub"].replace("${TablePrefix}", "")
        indexes = tuple(
            Index(
                gsi["IndexName"],
                tuple(k["AttributeName"] for k in _hash_first(gsi["KeySchema"])),
                gsi["Projection"]["ProjectionType"],
                tuple(gsi["Projection"].get("NonKeyAttributes", ())),
            )
            for gsi in props.get("GlobalSecondaryIndexes", [])
        )
        tables[name] = TableSchema(
            name,
            tuple(k["AttributeName"] for k in _hash_first(props["KeySchema"])),
            indexes,
            (props.get("TimeToLiveSpecification") or {}).get("AttributeName"),
            bool((props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")),
        )
    return tables


def _hash_first(keys: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(keys, key=lambda k: k["KeyType"] != "HASH")


# ---------------------------------------------------------------------------------------------- the call log


@dataclass(frozen=True)
class Write:
    """One item written (or deleted) by a DynamoDB request, with the index writes it caused."""

    table: str
    old: int
    new: int
    transactional: bool = False
    indexes: tuple[tuple[str, int], ...] = ()
    ttl_s: float | None = None  # how long the new item lives (its TTL attribute minus the write's time)

    @property
    def units(self) -> int:
        return write_units(self.old, self.new, transactional=self.transactional)


@dataclass(frozen=True)
class Read:
    """What one DynamoDB read consumed: an item, or a Query/Scan page (``size`` is all of its items)."""

    table: str
    index: str | None
    size: int
    consistent: bool
    transactional: bool = False

    @property
    def units(self) -> float:
        return read_units(self.size, consistent=self.consistent, transactional=self.transactional)


@dataclass(frozen=True)
class Call:
    """One AWS request.  ``function`` made it: a handler's name, ``checker`` for the regional worker, or
    ``poller:<source>`` for a Lambda event source mapping's own requests (reading a queue or a stream)."""

    service: str
    operation: str
    function: str
    request_bytes: int = 0
    response_bytes: int = 0
    payload_bytes: int = 0  # SQS: the messages' bodies and attributes sent or received
    recipients: int = 0  # SES: one email per recipient
    resource: str = ""  # the table, queue or bucket (logical name)
    cross_region_bytes: float = 0.0  # bytes that leave one region for another when deployed
    writes: tuple[Write, ...] = ()
    reads: tuple[Read, ...] = ()


@dataclass(frozen=True)
class Invocation:
    function: str
    duration_ms: float
    records: int = 0
    memory_mb: int | None = None  # what it ran with, where that changes (the check worker's, sized by its load)


@dataclass(frozen=True)
class FunctionConfig:
    memory_mb: int
    architecture: str
    tracing: bool
    # Lambda's own records (START, END, REPORT, XRAY) are INFO: a SystemLogLevel of WARN or above drops them.
    platform_lines: bool = True


@dataclass
class Run:
    """What a bench counted while ``checks`` checks were scheduled, run, stored and processed."""

    checks: int
    monitors: int
    interval_s: float  # a monitor's mean interval (1 / its mean rate)
    regions: tuple[str, ...]
    minutes: float  # the metered window's length (idle queue polling is modelled over it)
    queues: int  # queues a Lambda event source polls
    tables: dict[str, TableSchema]
    functions: dict[str, FunctionConfig]
    calls: list[Call] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    log_bytes: dict[str, int] = field(default_factory=dict)  # app lines and metrics, by function
    ticks: int = 0  # scheduled events that started the scheduler
    egress_bytes_per_check: float = 0.0  # what the checks sent their targets
    egress_basis: str = "measured"
    results_tables: tuple[str, ...] = ("result_packs", "result_periods")
    rollups_table: str = "rollups"
    rollup_items_per_monitor: int = 0  # the hourly and daily rollups a monitor keeps
    monitor_tables: tuple[str, ...] = ()  # one item per monitor (the monitor, its incident state)
    # The periods table's write units and storage in steady state, projected from the run's own items
    # (:func:`project_periods`): the bench's one pass covers a few minutes, not a whole period.
    periods: PeriodProjection | None = None
    # Work the run's own window does not hold, measured apart (:class:`Part`): the hour's close.
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Part:
    """Requests and invocations measured in a window of their own, for work the run's window leaves out, and how
    many checks of the steady state that work stands for: each line of it is priced per one of those checks."""

    name: str  # what the work is: said after each of its lines' items
    checks: float
    calls: list[Call]
    invocations: list[Invocation]
    basis: str


@dataclass(frozen=True)
class PeriodProjection:
    """One monitor's period item, per check, in a whole period: its write units and byte-months."""

    table: str
    wru_per_check: float
    byte_months_per_check: float
    measured_wru_per_check: float  # what the run's own pass wrote, per check (for the record)
    basis: str


def project_periods(
    table: str,
    items: list[tuple[int, int, str]],
    intervals: dict[str, int],
    regions: int,
    period_s: int,
    ttl_s: float,
    measured_wru_per_check: float,
) -> PeriodProjection:
    """Steady state of the periods table from the items a short run wrote (``items``: their size, checks and
    monitor): an item's size is fitted as a fixed part plus bytes per check (least squares over the run's items),
    then each monitor's whole-period item is sized at its interval's checks — ``regions`` x period / interval, or
    one check per region for an interval longer than the period (an item every interval / period periods)."""
    n = len(items)
    xs = [float(checks) for _, checks, _ in items]
    ys = [float(size) for size, _, _ in items]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread_x = sum((x - mean_x) ** 2 for x in xs)
    per_check = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread_x if spread_x else 0.0
    fixed = max(0.0, mean_y - per_check * mean_x)
    units = byte_months = checks = 0.0
    for monitor in {m for _, _, m in items}:
        interval = intervals[monitor]
        in_item = regions * max(1, period_s // interval)
        items_per_period = min(1.0, period_s / interval)
        size = fixed + per_check * in_item
        units += items_per_period * math.ceil(size / 1024)
        byte_months += items_per_period * (size + ITEM_OVERHEAD_BYTES) * ttl_s / 86400 / MONTH_DAYS
        checks += regions * period_s / interval
    basis = (
        f"modelled: one item a monitor a {period_s // 60}-minute period at its interval's checks, sized"
        f" {fixed:.0f} B + {per_check:.1f} B a check (fitted to the run's {n} items; its own pass:"
        f" {measured_wru_per_check:.4f} a check)"
    )
    return PeriodProjection(table, units / checks, byte_months / checks, measured_wru_per_check, basis)


def function_configs(functions: Iterable[str], stage: str = DEPLOYED_STAGE) -> dict[str, FunctionConfig]:
    """Memory, architecture and tracing of each deployed function, read from the deploy templates: the Chalice
    handlers through Chalice's own resolution of ``.chalice/config.json`` (stage, then function overrides), the
    regional worker from ``infra/checker.json``."""
    from chalice.config import Config

    disk = json.loads(CHALICE_CONFIG.read_text())
    checker = json.loads(CHECKER_TEMPLATE.read_text())["Resources"]["Checker"]["Properties"]
    out = {
        CHECKER: FunctionConfig(
            int(checker["MemorySize"]),
            checker.get("Architectures", ["x86_64"])[0],
            checker.get("Tracing") == "Active",
            _platform_lines(checker),
        )
    }
    merged = main_template()["Resources"]
    for name in functions:
        if name == CHECKER or name.startswith(CHECKER + "-"):
            continue
        config = Config(chalice_stage=stage, function_name=name, config_from_disk=disk)
        logical = "".join(part.capitalize() for part in name.split("_"))  # Chalice's resource name
        properties = merged.get(logical, {}).get("Properties", {})
        # Chalice sets no architecture: Lambda's default.
        out[name] = FunctionConfig(
            int(config.lambda_memory_size or 128), "x86_64", bool(config.xray_enabled), _platform_lines(properties)
        )
    return out


def _platform_lines(properties: dict[str, Any]) -> bool:
    """Whether a function's template lets Lambda log its INFO platform records (no JSON LoggingConfig above INFO)."""
    level = (properties.get("LoggingConfig") or {}).get("SystemLogLevel", "INFO")
    return str(level) in ("DEBUG", "INFO")


def deployed_log_level(stage: str = DEPLOYED_STAGE) -> str:
    """The deployed stage's LOG_LEVEL (config.json; the worker's template defaults to the same)."""
    disk = json.loads(CHALICE_CONFIG.read_text())
    return str(disk["stages"][stage]["environment_variables"].get("LOG_LEVEL", "INFO"))


def main_template() -> dict[str, Any]:
    return dict(json.loads(MAIN_TEMPLATE.read_text()))


# ---------------------------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class Line:
    item: str
    driver: str
    quantity: float  # units per check
    price: str  # a key of PRICES
    basis: str  # "measured", or "modelled: how"

    @property
    def usd_per_million(self) -> float:
        return self.quantity * 1e6 * PRICES[self.price].per_unit


def function_of(name: str) -> str:
    """The deployed function a local handler runs as (each region's checker is one function); an event source
    mapping's requests stay marked as its (``poller:checker``)."""
    poller = name.startswith(POLLER)
    bare = name.removeprefix(POLLER)
    bare = CHECKER if bare.startswith(CHECKER + "-") else bare
    return POLLER + bare if poller else bare


def driver_of(
    function: str, resource: str = "", results_tables: tuple[str, ...] = ("result_packs", "result_periods")
) -> str:
    """The budget line (DESIGN.md) an item counts against: what the results table costs is the stored results'
    whoever pays it; the rollups and incident handlers' and the worker's own; queues, logs and the rest, the rest."""
    if resource in results_tables:
        return "stored results"
    if function in ("rollups", "aggregator", "retake"):
        return "rollups"
    if function == "incidents":
        return "incident tracking"
    if function == CHECKER:
        return "checker"
    return "the rest"


def cost_lines(run: Run) -> list[Line]:
    """Every billable item of the run, per check, in table order."""
    per = 1 / run.checks
    lines: list[Line] = []
    lines += _lambda_lines(run, per)
    lines += _dynamodb_lines(run, per)
    lines += _storage_lines(run)
    lines += _sqs_lines(run, per)
    lines += _other_lines(run, per)
    for part in run.parts:
        lines += part_lines(run, part)
    return [line for line in lines if line.quantity > 0 or line.price == "unpriced"]


def part_lines(run: Run, part: Part) -> list[Line]:
    """A part's Lambda GB-s and DynamoDB units, per check it stands for: the requests of the functions it invoked
    (not the local loop's pollers meanwhile).  Its invocations are not requests of their own (the work runs inside
    an invocation the run counts), so they bill duration only."""
    names = {function_of(inv.function) for inv in part.invocations}
    sub = Run(
        checks=run.checks,
        monitors=run.monitors,
        interval_s=run.interval_s,
        regions=run.regions,
        minutes=run.minutes,
        queues=0,
        tables=run.tables,
        functions=run.functions,
        calls=[call for call in part.calls if function_of(call.function) in names],
        invocations=part.invocations,
        results_tables=run.results_tables,
        periods=run.periods,  # the periods' pass writes them: modelled for the steady state, as the run's are
    )
    per = 1 / part.checks
    lines = [line for line in _lambda_lines(sub, per) if line.price != "lambda_request"]
    lines += _dynamodb_lines(sub, per)
    # A modelled line (the periods' writes, per check of the steady state) keeps its own basis: it is not measured.
    return [
        Line(f"{line.item}, {part.name}", line.driver, line.quantity, line.price, line.basis)
        if line.basis.startswith("modelled")
        else Line(f"{line.item}, {part.name}", line.driver, line.quantity, line.price, part.basis)
        for line in lines
    ]


def _lambda_lines(run: Run, per: float) -> list[Line]:
    gb_s: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    memories: dict[str, set[int]] = defaultdict(set)
    for inv in run.invocations:
        name = function_of(inv.function)
        config = run.functions[name]
        memory = inv.memory_mb or config.memory_mb
        gb_s[name] += math.ceil(inv.duration_ms) / 1000 * memory / 1024
        count[name] += 1
        memories[name].add(memory)
    lines = []
    for name in sorted(count):
        config = run.functions[name]
        low, high = min(memories[name]), max(memories[name])
        what = f"{name} ({config.architecture}, {low if low == high else f'{low}-{high}'} MB)"
        driver = driver_of(name)
        price = f"lambda_gb_s_{config.architecture}"
        lines.append(Line(f"Lambda GB-s {what}", driver, gb_s[name] * per, price, "measured"))
        lines.append(Line(f"Lambda requests {name}", driver, count[name] * per, "lambda_request", "measured"))
    return lines


def _dynamodb_lines(run: Run, per: float) -> list[Line]:
    wru: dict[tuple[str, str], float] = defaultdict(float)
    rru: dict[tuple[str, str], float] = defaultdict(float)
    free: dict[str, int] = defaultdict(int)
    for call in run.calls:
        if call.service not in ("dynamodb", "dynamodb-streams"):
            continue
        function = function_of(call.function)
        if call.service == "dynamodb-streams" and call.operation == "GetRecords":
            free["Streams read by Lambda" if function.startswith(POLLER) else "unpriced"] += 1
            continue
        if not call.writes and not call.reads:
            control = call.operation.startswith(("Describe", "List", "GetShardIterator"))
            free["control" if control else "unpriced"] += 1
            continue
        for w in call.writes:
            wru[(w.table, function)] += w.units
            for index, size in w.indexes:
                wru[(f"{w.table}/{index}", function)] += index_write_units(size)
        for r in call.reads:
            rru[(r.table if r.index is None else f"{r.table}/{r.index}", function)] += r.units
    lines = []
    for (resource, function), units in sorted(wru.items()):
        driver = driver_of(function, resource.split("/")[0], run.results_tables)
        item = f"DynamoDB WRU {resource} <- {function}"
        if run.periods is not None and resource == run.periods.table:
            lines.append(Line(item, driver, run.periods.wru_per_check, "dynamodb_wru", run.periods.basis))
            continue
        lines.append(Line(item, driver, units * per, "dynamodb_wru", "measured"))
    for (resource, function), units in sorted(rru.items()):
        driver = driver_of(function, resource.split("/")[0], run.results_tables)
        lines.append(Line(f"DynamoDB RRU {resource} <- {function}", driver, units * per, "dynamodb_rru", "measured"))
    if free["Streams read by Lambda"]:
        quantity = free["Streams read by Lambda"] * per
        price = "dynamodb_stream_read_lambda"
        lines.append(Line("DynamoDB Streams GetRecords by Lambda", "the rest", quantity, price, "measured"))
    if free["control"]:
        quantity = free["control"] * per
        lines.append(Line("DynamoDB control plane requests", "the rest", quantity, "dynamodb_control", "measured"))
    if free["unpriced"]:
        quantity = free["unpriced"] * per
        lines.append(Line("not priced: other DynamoDB requests", "the rest", quantity, "unpriced", "measured"))
    return lines


def _new_items(run: Run, table: str) -> list[Write]:
    return [w for c in run.calls for w in c.writes if w.table == table and w.old == 0 and w.new > 0]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _storage_lines(run: Run) -> list[Line]:
    """GB-months per check.  Results: measured (items, sizes and TTL of the run's new items).  Rollups and
    per-monitor items: modelled from their measured sizes and how many a monitor keeps."""
    lines = []
    for table in run.results_tables:
        if run.periods is not None and table == run.periods.table:
            # Modelled, whichever window wrote them: the bench's pass is a part of its own (Part), not the run's.
            quantity, how = run.periods.byte_months_per_check / GB, "modelled: as its write line"
        else:
            new = _new_items(run, table)
            if not new:
                continue
            stored = sum((w.new + ITEM_OVERHEAD_BYTES) * (w.ttl_s or 0) / 86400 / MONTH_DAYS for w in new)
            quantity, how = stored / run.checks / GB, "measured"  # byte-months a check
        schema = run.tables.get(table)
        lines.append(Line(f"storage {table}", "stored results", quantity, "dynamodb_storage", how))
        if schema is not None and schema.pitr:
            lines.append(Line(f"PITR {table}", "stored results", quantity, "dynamodb_pitr", "measured"))
    checks_per_monitor_month = len(run.regions) * 3600 / run.interval_s * MONTH_HOURS
    per_monitor: dict[str, float] = {}
    every_call = [*run.calls, *(c for part in run.parts for c in part.calls)]
    rollup_sizes = [float(w.new) for c in every_call for w in c.writes if w.table == run.rollups_table and w.new]
    if rollup_sizes and run.rollup_items_per_monitor:
        per_monitor[run.rollups_table] = run.rollup_items_per_monitor * (_mean(rollup_sizes) + ITEM_OVERHEAD_BYTES)
    for table in run.monitor_tables:
        writes = [w for c in run.calls for w in c.writes if w.table == table and w.new]
        if not writes:
            continue
        entries: dict[str, list[float]] = defaultdict(list)
        for w in writes:
            for index, size in w.indexes:
                entries[index].append(size)
        per_monitor[table] = _mean([w.new for w in writes]) + ITEM_OVERHEAD_BYTES
        per_monitor[table] += sum(_mean(sizes) + ITEM_OVERHEAD_BYTES for sizes in entries.values())
    for table, stored_bytes in per_monitor.items():
        quantity = stored_bytes / checks_per_monitor_month / GB
        how = (
            f"modelled: {run.rollup_items_per_monitor} items a monitor, measured size"
            if table == run.rollups_table
            else "modelled: one item a monitor (and its index entries), measured size"
        )
        driver = "rollups" if table == run.rollups_table else "incident tracking"
        lines.append(Line(f"storage {table}", driver, quantity, "dynamodb_storage", how))
        schema = run.tables.get(table)
        if schema is not None and schema.pitr:
            lines.append(Line(f"PITR {table}", driver, quantity, "dynamodb_pitr", how))
    return lines


def _sqs_lines(run: Run, per: float) -> list[Line]:
    units: dict[tuple[str, str, str], int] = defaultdict(int)
    for call in run.calls:
        if call.service != "sqs":
            continue
        function = function_of(call.function)
        payload = call.payload_bytes if call.operation.startswith(("Send", "Receive")) else 0
        units[(call.resource, function, call.operation)] += sqs_units(payload)
    lines = []
    for (queue, function, operation), count in sorted(units.items()):
        item = f"SQS {operation} {queue} <- {function}"
        lines.append(Line(item, "the rest", count * per, "sqs_request", "measured (64 KB units)"))
    if run.queues:
        idle = run.queues * SQS_POLLERS * run.minutes * 60 / SQS_LONG_POLL_S
        how = f"modelled: {SQS_POLLERS} pollers x {SQS_LONG_POLL_S} s long polls on {run.queues} queues (upper bound)"
        lines.append(Line("SQS idle long polls by Lambda", "the rest", idle * per, "sqs_request", how))
    return lines


def _other_lines(run: Run, per: float) -> list[Line]:
    lines = []
    s3: dict[tuple[str, str], int] = defaultdict(int)
    kms: dict[tuple[str, str], int] = defaultdict(int)
    emails = 0
    unpriced: dict[str, int] = defaultdict(int)
    crossing: dict[tuple[str, str, str], float] = defaultdict(float)
    for call in run.calls:
        function = function_of(call.function)
        if call.cross_region_bytes:
            crossing[(call.service, call.resource, function)] += call.cross_region_bytes
        if call.service == "s3":
            tier = "s3_put" if call.operation.startswith(("Put", "Copy", "Post", "List", "Create")) else "s3_get"
            s3[(tier, function)] += 1
        elif call.service in ("ses", "sesv2") and call.operation.startswith("Send"):
            emails += call.recipients
        elif call.service == "kms":
            kms[(call.operation, function)] += 1
        elif call.service not in ("dynamodb", "dynamodb-streams", "sqs"):
            unpriced[f"{call.service} {call.operation}"] += 1
    for (tier, function), count in sorted(s3.items()):
        lines.append(Line(f"S3 {tier[3:].upper()} <- {function}", driver_of(function), count * per, tier, "measured"))
    for (operation, function), count in sorted(kms.items()):
        lines.append(
            Line(f"KMS {operation} <- {function}", driver_of(function), count * per, "kms_request", "measured")
        )
    if emails:
        lines.append(Line("SES emails", "the rest", emails * per, "ses_email", "measured"))
    lines.append(Line("EventBridge scheduled ticks", "the rest", run.ticks * per, "eventbridge_event", "measured"))
    lines += _log_lines(run, per)
    for (service, resource, function), size in sorted(crossing.items()):
        item = f"cross-region bytes {service} {resource} <- {function}"
        driver = driver_of(function, resource, run.results_tables)
        basis = "modelled: the worker's requests, 2 of 3 regions" if function == CHECKER else "measured"
        lines.append(Line(item, driver, size * per / GB, "transfer_region", basis))
    for what, count in sorted(unpriced.items()):
        lines.append(Line(f"not priced: {what}", "the rest", count * per, "unpriced", "measured"))
    return lines


def _log_lines(run: Run, per: float) -> list[Line]:
    lines = []
    logged: dict[str, int] = defaultdict(int)
    for name, size in run.log_bytes.items():
        logged[function_of(name)] += size
    for function, size in sorted(logged.items()):
        item = f"CloudWatch Logs, app lines and metrics <- {function}"
        lines.append(Line(item, "the rest", size * per / GB, "logs_ingest", "measured"))
    platform = 0
    invoked: dict[str, int] = defaultdict(int)
    for inv in run.invocations:
        function = function_of(inv.function)
        config = run.functions[function]
        if config.platform_lines:
            platform += sum(len(line) for line in PLATFORM_LINES) + (len(XRAY_LINE) if config.tracing else 0)
        invoked[function] += config.tracing
    if platform:
        how = "modelled: START, END, REPORT (and XRAY) lines per measured invocation"
        item = "CloudWatch Logs, Lambda platform lines"
        lines.append(Line(item, "the rest", platform * per / GB, "logs_ingest", how))
    seconds = run.minutes * 60
    traces = sum(seconds * sampled_per_second(count / seconds) for count in invoked.values() if count)
    if traces:
        how = f"modelled: Lambda samples {XRAY_RESERVOIR_PER_S}/s and {XRAY_RATE:.0%} of the rest, per function"
        lines.append(Line("X-Ray traces", "the rest", traces * per, "xray_trace", how))
    return lines


def sampled_per_second(rate: float) -> float:
    """Traces X-Ray records a second of a function invoked ``rate`` times a second (Lambda's default rule)."""
    return min(rate, XRAY_RESERVOIR_PER_S) + XRAY_RATE * max(0.0, rate - XRAY_RESERVOIR_PER_S)


def egress_line(run: Run) -> Line:
    return Line(
        "internet egress: the checks' requests to their targets",
        "egress",
        run.egress_bytes_per_check / GB,
        "transfer_internet",
        run.egress_basis,
    )


# ---------------------------------------------------------------------------------------------- the table


def month_checks(monitors: int = 10_000, interval_s: int = 60, regions: int = 3) -> float:
    return monitors * regions * 3600 / interval_s * MONTH_HOURS


def total(lines: Iterable[Line]) -> float:
    return sum(line.usd_per_million for line in lines)


def by_driver(lines: Iterable[Line]) -> dict[str, float]:
    out = dict.fromkeys(BUDGET, 0.0)
    for line in lines:
        out[line.driver] = out.get(line.driver, 0.0) + line.usd_per_million
    return out


def _quantity(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}" if value >= 1e-3 else f"{value:.3e}"


def _price(price: Price) -> str:
    per = "" if price.per == 1 else (" per M" if price.per == 1e6 else f" per {price.per:,.0f}")
    usd = f"{price.usd:.10f}".rstrip("0").rstrip(".")
    return f"${usd}{per} {price.unit}"


def render(lines: list[Line], egress: Line) -> str:
    """The cost table: each item, its count per check (and how it was had), its unit price, $/M checks, then the
    totals by budget driver, the month at 10,000 monitors x 60 s x 3 regions, and egress on its own line."""
    width = max(len(line.item) for line in [*lines, egress])
    header = f"{'billable item':<{width}}  {'per check':>10}  {'unit price':<24}  {'$/M checks':>10}  basis"
    out = [f"cost per check, us-east-1 on-demand prices of {PRICES_TAKEN}", header, "-" * len(header)]
    for line in lines:
        out.append(
            f"{line.item:<{width}}  {_quantity(line.quantity):>10}  {_price(PRICES[line.price]):<24}  "
            f"{line.usd_per_million:>10.4f}  {line.basis}"
        )
    out.append("-" * len(header))
    every = total(lines)
    month = month_checks()
    out.append(f"{'total, excluding internet egress':<{width}}  {'':>10}  {'':<24}  {every:>10.4f}")
    for driver, usd in by_driver(lines).items():
        budget = BUDGET.get(driver)
        limit = f"(budget {budget:.2f})" if budget is not None else ""
        out.append(f"{'  ' + driver:<{width}}  {'':>10}  {'':<24}  {usd:>10.4f}  {limit}")
    out.append(
        f"{'month at 10,000 monitors x 60 s x 3 regions':<{width}}  {month / 1e6:>9,.0f}M  {'checks':<24}  "
        f"${every * month / 1e6:>9,.0f}"
    )
    out.append(
        f"{egress.item:<{width}}  {_quantity(egress.quantity):>10}  {_price(PRICES[egress.price]):<24}  "
        f"{egress.usd_per_million:>10.4f}  {egress.basis}"
    )
    return "\n".join(out)
