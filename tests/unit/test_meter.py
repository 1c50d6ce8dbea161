"""The cost bench's meter (tests/load/meter.py): what it reads of the emulator to size a write, and when."""

from __future__ import annotations

from typing import Any

from tests.load.cost import TableSchema
from tests.load.meter import Meter

OLD = {"pk": {"S": "a"}, "v": {"S": "x" * 2000}}


def _put(meter: Meter, item: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"params": {"TableName": "p-t", "Item": item}}
    meter.before("dynamodb", "PutItem", {"body": b"{}", "headers": {}}, state)
    return state


def test_a_write_of_a_key_the_table_never_had_reads_nothing_of_the_emulator_and_replaces_nothing():
    """Reading what a write replaces costs the function's own time in the bench: the aggregator's new periods and
    rollups, and the worker's new packs, replace nothing, and a table whose keys are known says so without a read."""
    looked: list[dict[str, Any]] = []

    def lookup(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        looked.append(key)
        return OLD if key == {"pk": {"S": "a"}} else {**key, "v": {"S": "y"}}

    meter = Meter({"t": TableSchema("t", ("pk",))}, lookup, prefix="p-", home_region="r1", check_regions=("r1",))
    meter.start()
    try:
        meter.know_keys(lambda table, keys: [{"pk": {"S": "a"}}] if (table, keys) == ("p-t", ("pk",)) else [], ["t"])
        new = _put(meter, {"pk": {"S": "b"}, "v": {"S": "y"}})
        existing = _put(meter, {"pk": {"S": "a"}, "v": {"S": "y"}})
        again = _put(meter, {"pk": {"S": "b"}, "v": {"S": "z"}})  # written in the window: read what it replaces
    finally:
        meter.stop()
    assert [w[-1] for w in new["writes"]] == [None]
    assert [w[-1] for w in existing["writes"]] == [OLD]
    assert [w[-1] for w in again["writes"]] == [{"pk": {"S": "b"}, "v": {"S": "y"}}]
    assert looked == [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}]


def test_a_table_whose_keys_are_not_known_reads_what_every_write_replaces():
    looked: list[dict[str, Any]] = []
    meter = Meter(
        {"t": TableSchema("t", ("pk",))},
        lambda table, key: looked.append(key) or None,
        prefix="p-",
        home_region="r1",
        check_regions=("r1",),
    )
    meter.start()
    try:
        _put(meter, {"pk": {"S": "b"}})
    finally:
        meter.stop()
    assert looked == [{"pk": {"S": "b"}}]
