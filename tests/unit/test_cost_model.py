"""The cost model ``make bench`` prices a run with (tests/load/cost.py): AWS's arithmetic, exactly.

Every expected figure is worked out by hand in its comment, so a change to a price, a rounding rule or a line
shows up here instead of silently moving the bench's total.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.load import cost
from tests.load.cost import (
    Call,
    FunctionConfig,
    Index,
    Invocation,
    Read,
    Run,
    TableSchema,
    Write,
    index_writes,
    item_size,
    read_units,
    sqs_units,
    write_units,
)

MONTH_S = cost.MONTH_DAYS * 86400
GB = 1024**3


# ---------------------------------------------------------------------------------------------- sizes and units


def test_an_item_is_sized_by_dynamodbs_rules():
    item = {
        "id": {"S": "abc"},  # 2 + 3
        "n": {"N": "-0123.45"},  # 1 + (12345: 5 digits → 3 bytes) + 1
        "ok": {"BOOL": True},  # 2 + 1
        "m": {"M": {"a": {"S": "x"}}},  # 1 + 3 + (1 + 1 + 1)
        "l": {"L": [{"N": "1"}, {"S": "ab"}]},  # 1 + 3 + (1 + 2) + (1 + 2)
        "none": {"NULL": True},  # 4 + 1
        "tags": {"SS": ["a", "bc"]},  # 4 + 3
    }
    assert item_size(item) == 5 + 5 + 3 + 7 + 10 + 5 + 7
    assert item_size(None) == 0


@pytest.mark.parametrize(
    ("old", "new", "transactional", "units"),
    [
        (0, 1, False, 1),  # a new small item: the minimum
        (0, 1024, False, 1),
        (0, 1025, False, 2),  # every started KB
        (3000, 100, False, 3),  # the larger of the old and the new size
        (2048, 0, False, 2),  # a delete pays for what it removes
        (0, 0, False, 1),  # deleting nothing, or a failed condition on nothing, still costs one
        (0, 1025, True, 4),  # a transaction doubles it
    ],
)
def test_a_write_costs_a_unit_per_started_kb_of_the_larger_image(old, new, transactional, units):
    assert write_units(old, new, transactional=transactional) == units


@pytest.mark.parametrize(
    ("size", "consistent", "transactional", "units"),
    [
        (1, True, False, 1.0),
        (4096, True, False, 1.0),
        (4097, True, False, 2.0),  # every started 4 KB
        (4097, False, False, 1.0),  # eventually consistent: half
        (1, False, False, 0.5),  # even reading nothing costs the minimum
        (0, False, False, 0.5),
        (5000, True, True, 4.0),  # a transaction doubles the strongly consistent price
    ],
)
def test_a_read_costs_a_unit_per_started_4_kb_halved_when_eventually_consistent(size, consistent, transactional, units):
    assert read_units(size, consistent=consistent, transactional=transactional) == units


@pytest.mark.parametrize(("payload", "units"), [(0, 1), (1, 1), (65536, 1), (65537, 2), (250_000, 4)])
def test_an_sqs_request_is_one_request_per_started_64_kb_of_payload(payload, units):
    assert sqs_units(payload) == units


MONITORS = TableSchema(
    "monitors",
    ("team_id", "monitor_id"),
    (
        Index("monitor-index", ("monitor_id",), "KEYS_ONLY"),
        Index("schedule-index", ("schedule_key", "monitor_id"), "ALL"),
        Index("status-index", ("status",), "INCLUDE", ("name",)),
    ),
)
KEYS = {"team_id": {"S": "team_1"}, "monitor_id": {"S": "mon_1"}}  # 7 + 6, 10 + 5: 28 bytes
UP = {**KEYS, "schedule_key": {"S": "60:7"}, "name": {"S": "Shop"}, "status": {"S": "up"}, "n": {"N": "1"}}


def test_a_new_item_is_put_into_every_index_whose_keys_it_has():
    # schedule-index (ALL): the whole item, 28 + (12 + 4) + (4 + 4) + (6 + 2) + (1 + 2) = 63 bytes;
    # monitor-index (KEYS_ONLY): the table's and the index's keys, 28; status-index (INCLUDE name): 28 + 8 + 8.
    assert item_size(UP) == 63
    assert index_writes(MONITORS, None, UP) == (("monitor-index", 28), ("schedule-index", 63), ("status-index", 44))


def test_a_change_to_a_projected_attribute_writes_the_index_that_projects_it_once():
    counted = {**UP, "n": {"N": "2"}}
    assert index_writes(MONITORS, UP, counted) == (("schedule-index", 63),)  # only ALL projects n


def test_a_changed_index_key_is_a_delete_and_a_put():
    down = {**UP, "status": {"S": "down"}}  # 2 bytes longer
    assert index_writes(MONITORS, UP, down) == (("schedule-index", 65), ("status-index", 44), ("status-index", 46))


def test_an_item_leaving_a_sparse_index_is_one_delete_and_an_unchanged_one_writes_no_index():
    paused = {k: v for k, v in UP.items() if k != "schedule_key"}
    assert index_writes(MONITORS, UP, paused) == (("schedule-index", 63),)
    assert index_writes(MONITORS, UP, dict(UP)) == ()


def test_tables_and_their_indexes_are_read_from_the_deploy_template():
    tables = cost.table_schemas(cost.main_template())
    monitors = tables["monitors"]
    assert monitors.keys == ("team_id", "monitor_id")
    assert {(i.name, i.projection) for i in monitors.indexes} == {
        ("monitor-index", "KEYS_ONLY"),
        ("schedule-index", "ALL"),
        ("due-index", "KEYS_ONLY"),
    }
    assert tables["result_packs"].ttl == "expires_at"
    assert not tables["result_packs"].pitr  # telemetry: point-in-time recovery off (docs/decisions.md)
    assert not tables["result_periods"].pitr
    assert monitors.pitr


def test_each_functions_memory_architecture_and_tracing_come_from_the_templates():
    configs = cost.function_configs(["aggregator", "checker-eu-west-1"])
    # infra/checker.json; Lambda's own START/END/REPORT records are dropped by the templates' SystemLogLevel WARN
    assert configs["checker"] == FunctionConfig(439, "arm64", False, platform_lines=False)
    assert configs["aggregator"] == FunctionConfig(1024, "x86_64", False, platform_lines=False)
    assert set(configs) == {"checker", "aggregator"}


# ---------------------------------------------------------------------------------------------- a hand-made run

TABLES = {
    "result_packs": TableSchema("result_packs", ("monitor_id", "slot"), ttl="expires_at", pitr=True),
    "monitors": MONITORS,
}
FUNCTIONS = {
    "checker": FunctionConfig(1024, "x86_64", True),
    "rollups": FunctionConfig(1769, "arm64", False),
}


def _run(**fields) -> Run:
    """1,000 checks of 100 monitors on 60 s in three regions, in one minute."""
    defaults = {"checks": 1000, "monitors": 100, "interval_s": 60, "regions": ("r1", "r2", "r3"), "minutes": 1}
    return Run(**{"queues": 0, "tables": TABLES, "functions": FUNCTIONS, **defaults, **fields})


def _priced(run: Run) -> dict[str, float]:
    return {line.item: line.usd_per_million for line in cost.cost_lines(run)}


CALLS = [
    # The worker stores 25 results of 400 bytes, each kept a month; 30,000 bytes leave their regions.
    Call(
        "dynamodb", "BatchWriteItem", "checker", resource="result_packs", cross_region_bytes=30_000,
        writes=tuple(Write("result_packs", 0, 400, ttl_s=MONTH_S) for _ in range(25)),
    ),
    # The scheduler reads 10,000 bytes of its index, eventually consistent: 3 x 4 KB halved = 1.5 RRU.
    Call("dynamodb", "Query", "scheduler", reads=(Read("monitors", "schedule-index", 10_000, consistent=False),)),
    # The incident handler updates a monitor (950 bytes: 1 WRU) and so its ALL index entry (1 WRU).
    Call(
        "dynamodb", "UpdateItem", "incidents",
        writes=(Write("monitors", 900, 950, indexes=(("schedule-index", 950),)),),
    ),
    # … and in a transaction a 1,600-byte state (2 KB x 2 = 4 WRU) and a new 700-byte incident (1 x 2 = 2 WRU).
    Call(
        "dynamodb", "TransactWriteItems", "incidents",
        writes=(
            Write("monitor_states", 1500, 1600, transactional=True),
            Write("incidents", 0, 700, transactional=True),
        ),
    ),
    # 200,000 bytes of jobs in one batch: 4 requests of 64 KB; the poller's receive and delete: one each.
    Call("sqs", "SendMessageBatch", "scheduler", resource="checks-*", payload_bytes=200_000),
    Call("sqs", "ReceiveMessage", "poller:checker-r2", resource="checks-*", payload_bytes=100),
    Call("sqs", "DeleteMessageBatch", "poller:checker-r2", resource="checks-*"),
    Call("dynamodb-streams", "GetRecords", "poller:rollups"),  # Lambda reads streams for free
]  # fmt: skip


def test_a_hand_made_run_is_priced_line_by_line_per_million_checks():
    run = _run(calls=CALLS, log_bytes={"checker-r1": 2000}, egress_bytes_per_check=1500)
    assert _priced(run) == pytest.approx(
        {
            # 25 WRU / 1,000 checks x $0.625 per million
            "DynamoDB WRU result_packs <- checker": 0.015625,
            "DynamoDB WRU monitor_states <- incidents": 0.0025,  # 4 WRU
            "DynamoDB WRU incidents <- incidents": 0.00125,  # 2 WRU
            "DynamoDB WRU monitors <- incidents": 0.000625,  # 1 WRU
            "DynamoDB WRU monitors/schedule-index <- incidents": 0.000625,
            "DynamoDB RRU monitors/schedule-index <- scheduler": 0.0001875,  # 1.5 RRU x $0.125 per million
            "DynamoDB Streams GetRecords by Lambda": 0.0,
            # 25 x (400 + 100) byte-months / 1,000 checks = 12.5 B: 12.5 / 2**30 GB x $0.25 (PITR $0.20)
            "storage result_packs": 0.0029103830456733704,
            "PITR result_packs": 0.0023283064365386963,
            "SQS SendMessageBatch checks-* <- scheduler": 0.0016,  # 4 requests x $0.40 per million
            "SQS ReceiveMessage checks-* <- poller:checker": 0.0004,
            "SQS DeleteMessageBatch checks-* <- poller:checker": 0.0004,
            # 2 bytes a check x $0.50 per GB
            "CloudWatch Logs, app lines and metrics <- checker": 2 / GB * 1e6 * 0.50,
            # 30 bytes a check x $0.02 per GB
            "cross-region bytes dynamodb result_packs <- checker": 30 / GB * 1e6 * 0.02,
        },
        rel=1e-12,
    )
    lines = cost.cost_lines(run)
    assert cost.total(lines) == pytest.approx(0.029941305601596836, rel=1e-12)  # the lines above, added up
    assert cost.by_driver(lines) == pytest.approx(
        {
            "checker": 0.0,
            "stored results": 0.015625 + 0.0029103830456733704 + 0.0023283064365386963 + 30 / GB * 0.02e6,
            "rollups": 0.0,
            "incident tracking": 0.0025 + 0.00125 + 0.000625 + 0.000625,
            "the rest": 0.0001875 + 0.0016 + 0.0004 + 0.0004 + 2 / GB * 0.5e6,
        },
        rel=1e-12,
    )
    # 1,500 bytes a check to the internet x $0.09 per GB, on its own line
    assert cost.egress_line(run).usd_per_million == pytest.approx(1500 / GB * 0.09e6, rel=1e-12)


def test_kms_is_billed_per_request_to_whoever_opens_or_makes_data_keys():
    calls = [Call("kms", "Decrypt", "scheduler"), Call("kms", "Decrypt", "scheduler"), Call("kms", "Decrypt", "alerts")]
    priced = _priced(_run(calls=calls))
    # 2 requests / 1,000 checks x $0.03 per 10,000
    assert priced["KMS Decrypt <- scheduler"] == pytest.approx(2 * 1000 * 0.03 / 1e4, rel=1e-12)
    assert priced["KMS Decrypt <- alerts"] == pytest.approx(1000 * 0.03 / 1e4, rel=1e-12)
    assert not [item for item in priced if item.startswith("not priced")]


def test_lambda_is_billed_per_started_millisecond_by_memory_and_architecture():
    invocations = [
        Invocation("checker-r1", 60000.2),  # 60,001 ms
        Invocation("checker-r2", 59998.5),  # 59,999 ms: 120 s at 1 GB together
        *(Invocation("rollups", 99.1, records=50) for _ in range(4)),  # 4 x 100 ms at 1,769 MB
    ]
    priced = _priced(_run(invocations=invocations))
    assert priced["Lambda GB-s checker (x86_64, 1024 MB)"] == pytest.approx(0.12 * 1e6 * 0.0000166667, rel=1e-12)
    assert priced["Lambda requests checker"] == pytest.approx(0.002 * 0.20, rel=1e-12)
    assert priced["Lambda GB-s rollups (arm64, 1769 MB)"] == pytest.approx(
        0.4 * 1769 / 1024 / 1000 * 1e6 * 0.0000133334, rel=1e-12
    )
    # START + END + REPORT (270 bytes) for all six, XRAY (93 bytes) for the two traced: 1,806 bytes / 1,000 checks
    assert priced["CloudWatch Logs, Lambda platform lines"] == pytest.approx(1.806 / GB * 1e6 * 0.5, rel=1e-12)
    assert priced["X-Ray traces"] == pytest.approx(0.002 * 5.00, rel=1e-12)  # 2 a minute: every one is sampled
    quiet = {name: dataclasses.replace(config, platform_lines=False) for name, config in FUNCTIONS.items()}
    assert "CloudWatch Logs, Lambda platform lines" not in _priced(_run(invocations=invocations, functions=quiet))


def test_x_ray_records_the_first_trace_each_second_and_five_percent_of_the_rest():
    assert cost.sampled_per_second(0.5) == 0.5
    assert cost.sampled_per_second(21) == pytest.approx(1 + 0.05 * 20)


def test_idle_queue_polling_rollups_and_per_monitor_items_are_modelled_from_measured_sizes():
    writes = (
        Write("rollups", 0, 200),  # one hourly and one daily rollup of 200 bytes
        Write("rollups", 0, 200),
        Write("monitors", 900, 900, indexes=(("schedule-index", 900),)),
    )
    run = _run(
        queues=4,
        calls=[Call("dynamodb", "BatchWriteItem", "rollups", writes=writes)],
        rollup_items_per_monitor=472,
        rollups_table="rollups",
        monitor_tables=("monitors",),
    )
    priced = _priced(run)
    # 4 queues x 5 pollers x 3 long polls a minute, for the 1,000 checks of one minute: 0.06 a check x $0.40
    assert priced["SQS idle long polls by Lambda"] == pytest.approx(0.024, rel=1e-12)
    # A monitor keeps 472 rollups of 300 bytes stored, and is checked 3 x 60 x 730 = 131,400 times a month.
    assert priced["storage rollups"] == pytest.approx(472 * 300 / 131_400 / GB * 1e6 * 0.25, rel=1e-12)
    # Its item and its ALL index entry: 2 x (900 + 100) bytes; monitors has no PITR in this hand-made schema.
    assert priced["storage monitors"] == pytest.approx(2000 / 131_400 / GB * 1e6 * 0.25, rel=1e-12)
    assert "PITR monitors" not in priced


def test_the_table_shows_the_total_the_month_at_ten_thousand_monitors_and_egress_apart():
    run = _run(calls=CALLS, egress_bytes_per_check=1500)
    text = cost.render(cost.cost_lines(run), cost.egress_line(run))
    assert cost.month_checks() == 1_314_000_000  # 10,000 monitors x 3 regions x 60 an hour x 730 hours
    assert "total, excluding internet egress" in text
    assert "month at 10,000 monitors x 60 s x 3 regions" in text
    assert text.splitlines()[-1].startswith("internet egress")
    assert f"prices of {cost.PRICES_TAKEN}" in text


def test_a_request_the_model_cannot_price_is_listed_not_hidden():
    calls = [
        Call("dynamodb", "ExecuteStatement", "incidents"),
        Call("dynamodb", "DescribeTable", "poller:rollups"),
        Call("sns", "Publish", "alert_deliveries"),
    ]
    priced = {line.item: line for line in cost.cost_lines(_run(calls=calls))}
    assert priced["not priced: other DynamoDB requests"].quantity == 0.001
    assert priced["not priced: sns Publish"].quantity == 0.001
    assert priced["DynamoDB control plane requests"].usd_per_million == 0.0


def test_periods_are_projected_to_a_whole_period_from_the_runs_own_items() -> None:
    """The bench's pass covers a few minutes: a monitor's whole-period item is sized from the run's items (a fixed
    part plus bytes per check, fitted), at its interval's checks; write units per item by the started kilobyte."""
    from tests.load.cost import project_periods

    items = [(200 + 20 * n, n, m) for n, m in ((30, "a"), (12, "a"), (3, "b"), (6, "a"))]
    projected = project_periods(
        "result_periods", items, {"a": 30, "b": 3600}, 3, 600, ttl_s=30 * 86400, measured_wru_per_check=0.2
    )

    # a: 60 checks a period in one 1,400 B item (2 WRU); b: 3 checks in a 260 B item (1 WRU) every sixth period.
    assert projected.wru_per_check == pytest.approx((2 + 1 / 6) / (60 + 0.5))
    months = 30 / cost.MONTH_DAYS  # kept 30 days
    assert projected.byte_months_per_check == pytest.approx((1500 + 360 / 6) * months / (60 + 0.5))
    assert "200 B + 20.0 B a check" in projected.basis
    assert "its own pass: 0.2000 a check" in projected.basis


def test_a_part_measured_apart_is_priced_per_check_it_stands_for_with_its_functions_requests_only():
    """The hour's close in the cost bench: work its window leaves out, measured in a window of its own."""
    rollups = tuple(Write("rollups", 0, 200) for _ in range(10))  # ten 200-byte rollups: 10 WRU
    part = cost.Part(
        "the hour's close",
        500,  # the checks that work stands for
        [
            Call("dynamodb", "BatchWriteItem", "rollups", writes=rollups),
            Call("dynamodb-streams", "GetRecords", "poller:incidents"),  # the local loop meanwhile: not the part's
            Call("dynamodb", "PutItem", "checker", writes=(Write("result_packs", 0, 400),)),  # nor another's
        ],
        [Invocation("rollups", 999.2)],  # 1,000 ms at 1,769 MB
        "measured apart",
    )
    lines = cost.cost_lines(_run(parts=(part,)))
    assert {line.basis for line in lines} == {"measured apart"}
    assert {line.item: line.usd_per_million for line in lines} == pytest.approx(
        {
            # 10 WRU / 500 checks x $0.625 per million
            "DynamoDB WRU rollups <- rollups, the hour's close": 0.0125,
            # 1 s x 1,769 / 1,024 GB / 500 checks x $0.0000133334 (arm64); no request: it ran inside one counted
            "Lambda GB-s rollups (arm64, 1769 MB), the hour's close": 1769 / 1024 / 500 * 1e6 * 0.0000133334,
        },
        rel=1e-12,
    )


def test_the_periods_pass_measured_apart_keeps_the_periods_storage_and_their_modelled_writes_say_so():
    """The cost bench's pass over the periods runs in a window of its own (a Part) since session 18: the run's window
    writes no period, and the periods' storage line, modelled for the steady state, was left out (fresh-eyes
    review); and the part's write line, the same model, said it was measured."""
    periods = cost.PeriodProjection("result_periods", 0.05, 2_000.0, 0.08, "modelled: one item a monitor a period")
    functions = {**FUNCTIONS, "aggregator": FunctionConfig(1024, "x86_64", False)}
    tables = {**TABLES, "result_periods": TableSchema("result_periods", ("monitor_id", "period"))}
    the_pass = cost.Part(
        "the periods' pass",
        400,
        [
            Call(
                "dynamodb",
                "BatchWriteItem",
                "aggregator",
                writes=tuple(Write("result_periods", 0, 300) for _ in range(8)),
            )
        ],
        [Invocation("aggregator", 99.5)],
        "measured apart",
    )
    run = _run(calls=CALLS, periods=periods, parts=(the_pass,), tables=tables, functions=functions)
    lines = {line.item: line for line in cost.cost_lines(run)}

    # 2,000 byte-months a check / 2**30 x $0.25 per GB-month, as its write line models it
    assert lines["storage result_periods"].usd_per_million == pytest.approx(2_000 / GB * 1e6 * 0.25, rel=1e-12)
    assert lines["storage result_periods"].basis == "modelled: as its write line"
    written = lines["DynamoDB WRU result_periods <- aggregator, the periods' pass"]
    assert (written.quantity, written.basis) == (0.05, periods.basis)  # per check of the steady state, modelled
    assert lines["Lambda GB-s aggregator (x86_64, 1024 MB), the periods' pass"].basis == "measured apart"
