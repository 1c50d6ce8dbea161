"""The embedded emulator's DynamoDB answers (chalicelib.local.atomic): plain JSON written at once says exactly what
moto's own serializer says, and anything that is not plain JSON still takes moto's path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.core import responses

from chalicelib.aws.clients import client
from chalicelib.local import atomic

TABLE = "emulator-probe"

ITEMS = [
    {
        "pk": {"S": "plain"},
        "sk": {"N": "1"},
        "s": {"S": 'café — "quoted" \\ back\nslash'},
        "n": {"N": "-12.50"},
        "bool": {"BOOL": False},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "3"}, {"M": {}}]}}},
        "empty": {"L": []},
    },
    {"pk": {"S": "plain"}, "sk": {"N": "2"}, "blob": {"B": b"\x00\x01gzip\xff"}, "bs": {"BS": [b"\x01", b"\x02"]}},
    {"pk": {"S": "plain"}, "sk": {"N": "3"}, "nothing": {"NULL": True}, "null_text": {"S": "null"}},
]


def _pk_sk_table(dynamodb: Any, name: str, sort_type: str, **options: Any) -> None:
    """A table keyed by a string ``pk`` and a ``sk`` of ``sort_type``."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": sort_type},
        ],
        BillingMode="PAY_PER_REQUEST",
        **options,
    )


@pytest.fixture
def table(aws: Any) -> Any:
    dynamodb = client("dynamodb")
    _pk_sk_table(dynamodb, TABLE, "N")
    for item in ITEMS:
        dynamodb.put_item(TableName=TABLE, Item=item)
    return dynamodb


@contextmanager
def counting_fast_answers() -> Iterator[list[str]]:
    """The operations answered by the fast path while inside."""
    seen: list[str] = []
    original = atomic.plain_json

    def plain_json(result: Any) -> str | None:
        body = original(result)
        if body is not None:
            seen.append(body)
        return body

    atomic.plain_json = plain_json  # type: ignore[assignment]
    try:
        yield seen
    finally:
        atomic.plain_json = original  # type: ignore[assignment]


@contextmanager
def moto_serializer_only() -> Iterator[None]:
    patched = responses.ActionResult.execute_result
    responses.ActionResult.execute_result = patched.__wrapped__  # type: ignore[attr-defined]
    try:
        yield
    finally:
        responses.ActionResult.execute_result = patched  # type: ignore[method-assign]


def _reads(dynamodb: Any) -> dict[str, Any]:
    answers = {
        "query": dynamodb.query(
            TableName=TABLE, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "plain"}}
        ),
        "page": dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "plain"}},
            Limit=1,
        ),
        "get": dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "plain"}, "sk": {"N": "1"}}),
        "batch": dynamodb.batch_get_item(
            RequestItems={TABLE: {"Keys": [{"pk": {"S": "plain"}, "sk": {"N": str(n)}} for n in (1, 2, 3, 9)]}}
        ),
        "update": dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": "plain"}, "sk": {"N": "1"}},
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues={":one": {"N": "0"}},
            ReturnValues="ALL_NEW",
        ),
    }
    for answer in answers.values():
        answer.pop("ResponseMetadata")
    answers["batch"]["Responses"][TABLE].sort(key=lambda item: item["sk"]["N"])
    return answers


def test_fast_answers_say_what_motos_serializer_says(table):
    with counting_fast_answers() as fast:
        quick = _reads(table)
    assert fast, "no answer took the fast path"
    with moto_serializer_only(), counting_fast_answers() as slow_path:
        reference = _reads(table)
    assert not slow_path
    assert quick == reference
    assert quick["get"]["Item"]["s"] == ITEMS[0]["s"]
    assert quick["page"]["LastEvaluatedKey"] == {"pk": {"S": "plain"}, "sk": {"N": "1"}}


def test_what_is_not_plain_json_takes_motos_path(table):
    blob = {"pk": {"S": "plain"}, "sk": {"N": "2"}}
    with counting_fast_answers() as fast:
        item = table.get_item(TableName=TABLE, Key=blob)["Item"]
        assert item["blob"] == {"B": b"\x00\x01gzip\xff"}  # bytes: base64 on the wire, decoded by botocore
        with pytest.raises(table.exceptions.ResourceNotFoundException):
            table.get_item(TableName="no-such-table", Key=blob)
    assert fast == [], "bytes and an error are written by moto's serializer"


def test_a_null_attribute_and_a_string_reading_null_are_plain_json(table):
    """DynamoDB's NULL type is ``{"NULL": true}``, and "null" in a string is text: neither is a null member."""
    key = {"pk": {"S": "plain"}, "sk": {"N": "3"}}
    with counting_fast_answers() as fast:
        nulls = table.get_item(TableName=TABLE, Key=key)["Item"]
    with moto_serializer_only():
        assert table.get_item(TableName=TABLE, Key=key)["Item"] == nulls
    assert len(fast) == 1
    assert nulls["nothing"] == {"NULL": True}
    assert nulls["null_text"] == {"S": "null"}


def test_the_fast_path_is_installed_once():
    atomic.make_dynamodb_fast()
    installed = responses.ActionResult.execute_result
    atomic.make_dynamodb_fast()
    assert responses.ActionResult.execute_result is installed
    assert getattr(installed, "_fast", False)
    assert not getattr(installed.__wrapped__, "_fast", False)  # type: ignore[attr-defined]


def test_plain_json_refuses_what_json_cannot_say_exactly():
    assert atomic.plain_json({"Items": [{"a": {"S": "b"}}], "Count": 1}) == '{"Items":[{"a":{"S":"b"}}],"Count":1}'
    assert atomic.plain_json({"a": None}) is None
    assert atomic.plain_json({"Items": [{"a": {"M": {"b": {"L": [None]}}}}]}) is None
    assert atomic.plain_json({"Items": [], "ConsumedCapacity": {"CapacityUnits": 1}}) == (
        '{"Items":[],"ConsumedCapacity":{"CapacityUnits":1.0}}'
    )
    assert atomic.plain_json({"Table": {"ProvisionedThroughput": {"ReadCapacityUnits": 1}}}) is None
    # a string that reads "null" or "Capacity" is a string: written at once (found slow: a page of events whose JSON
    # data held a null went through moto's serializer, 60 s of a 20 s test's profile)
    text = {"Items": [{"data": {"S": '{"cause": null}'}, "note": {"S": "Capacity"}}]}
    assert atomic.plain_json(text) == json.dumps(text, separators=(",", ":"))
    assert atomic.plain_json({"a": b"x"}) is None
    assert atomic.plain_json({"a": float("nan")}) is None
    assert atomic.plain_json(["not", "a", "dict"]) is None


@contextmanager
def moto_query_only() -> Iterator[None]:
    from moto.dynamodb.models.table import Table

    patched = Table.query
    Table.query = patched.__wrapped__  # type: ignore[attr-defined, method-assign]
    try:
        yield
    finally:
        Table.query = patched  # type: ignore[method-assign]


def test_a_query_of_one_partition_answers_what_motos_whole_table_pass_answers(aws):
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName="emulator-partitions",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for p in range(12):
        for k in (7, 3, 11, 1, 5):
            item = {"pk": {"S": f"p{p}"}, "sk": {"S": f"k{k:02d}"}, "g": {"S": f"g{k % 2}"}, "n": {"N": str(p * k)}}
            dynamodb.put_item(TableName="emulator-partitions", Item=item)

    def pages(**query: Any) -> list[Any]:
        out, start = [], None
        while True:
            page = dynamodb.query(
                TableName="emulator-partitions", **query, **({"ExclusiveStartKey": start} if start else {})
            )
            out.append((page["Items"], page.get("LastEvaluatedKey"), page["Count"], page["ScannedCount"]))
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    queries = [
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p4"}}},
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p4"}}, "Limit": 2},
        {
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":p": {"S": "p9"}, ":a": {"S": "k02"}, ":b": {"S": "k08"}},
            "ScanIndexForward": False,
            "Limit": 1,
        },
        {
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "n > :n",
            "ExpressionAttributeValues": {":p": {"S": "p3"}, ":n": {"N": "10"}},
        },
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "nobody"}}},
        {"IndexName": "by-g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "g1"}}},
    ]
    fast = [pages(**q) for q in queries]
    with moto_query_only():
        reference = [pages(**q) for q in queries]
    assert fast == reference
    assert [len(items) for items, *_ in fast[0]] == [5]
    assert [item["sk"]["S"] for items, *_ in fast[1] for item in items] == ["k01", "k03", "k05", "k07", "k11"]


def _with_capacity(dynamodb: Any, mode: str) -> dict[str, Any]:
    """Every kind of request PynamoDB makes, asking for consumed capacity as it does (``TOTAL``) or by index."""
    key, written = {"pk": {"S": "plain"}, "sk": {"N": "1"}}, {"pk": {"S": "written"}, "sk": {"N": "1"}}
    asked = {"ReturnConsumedCapacity": mode}
    answers = {
        "get": dynamodb.get_item(TableName=TABLE, Key=key, **asked),
        "query": dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "plain"}},
            **asked,
        ),
        "batch_get": dynamodb.batch_get_item(RequestItems={TABLE: {"Keys": [key]}}, **asked),
        "put": dynamodb.put_item(TableName=TABLE, Item={**written, "x": {"S": "y"}}, **asked),
        "update": dynamodb.update_item(
            TableName=TABLE,
            Key=written,
            UpdateExpression="SET x = :x",
            ExpressionAttributeValues={":x": {"S": "z"}},
            ReturnValues="ALL_NEW",
            **asked,
        ),
        "batch_write": dynamodb.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": {"pk": {"S": "w"}, "sk": {"N": "1"}}}}]}, **asked
        ),
        "transact": dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, "Item": {"pk": {"S": "t"}, "sk": {"N": "1"}}}}], **asked
        ),
        "delete": dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "w"}, "sk": {"N": "1"}}, **asked),
    }
    for answer in answers.values():
        answer.pop("ResponseMetadata")
    return answers


@pytest.mark.parametrize("mode", ["TOTAL", "INDEXES", "NONE"])
def test_consumed_capacity_is_written_at_once_and_as_moto_says(table, mode):
    """PynamoDB asks every request for its consumed capacity (found slow: every one of its answers went through
    moto's serializer).  Those answers are written at once now, and say what moto's serializer says: a ``double``
    through float() (``"CapacityUnits": 1.0``, where json.dumps would write moto's int as ``1``, and botocore would
    hand the caller an int), an empty list or map as moto writes it."""
    with counting_fast_answers() as fast:
        quick = _with_capacity(table, mode)
    with moto_serializer_only():
        reference = _with_capacity(table, mode)
    assert quick == reference
    assert len(fast) == len(quick) - 1  # all but the query, whose items hold bytes
    capacities = [a["ConsumedCapacity"] for a in quick.values() if "ConsumedCapacity" in a]
    if mode != "NONE":
        units = [c["CapacityUnits"] for found in capacities for c in (found if isinstance(found, list) else [found])]
        assert units
        assert {type(u) for u in units} == {float}


def _stream_table(dynamodb: Any, name: str) -> None:
    _pk_sk_table(
        dynamodb, name, "S", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    for n in range(5):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": f"{n}"}, "n": {"N": str(n)}})


def _transaction(name: str, *, fail: bool) -> list[dict[str, Any]]:
    """An Update (in place), a Put of a new item, a Delete and a condition that holds unless ``fail``."""
    return [
        {
            "Update": {
                "TableName": name,
                "Key": {"pk": {"S": "a"}, "sk": {"S": "0"}},
                "UpdateExpression": "SET n = n + :one, added = :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        {"Put": {"TableName": name, "Item": {"pk": {"S": "a"}, "sk": {"S": "new"}, "n": {"N": "9"}}}},
        {"Delete": {"TableName": name, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}},
        {
            "ConditionCheck": {
                "TableName": name,
                "Key": {"pk": {"S": "a"}, "sk": {"S": "2"}},
                "ConditionExpression": "n = :n",
                "ExpressionAttributeValues": {":n": {"N": "7" if fail else "2"}},
            }
        },
    ]


def _state(dynamodb: Any, name: str) -> tuple[list[Any], list[Any]]:
    items = dynamodb.query(
        TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}}
    )
    streams = client("dynamodbstreams")
    arn = dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return items["Items"], [(r["eventName"], r["dynamodb"].get("NewImage")) for r in records]


def test_a_transaction_copies_only_the_items_it_names_and_rolls_back_as_moto_does(aws):
    """moto deep-copies every table a transaction touches, to roll back to; here only the items it names are copied
    (found slow: half of a 20 s test was those copies).  A failed transaction leaves the items and the stream as
    they were, a successful one changes them exactly as moto's own pass does, and the items it did not name are
    the very objects they were (moto's copy would have replaced each of them)."""
    from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

    dynamodb = client("dynamodb")
    outcomes = {}
    for path in ("fast", "moto"):
        name = f"emulator-transactions-{path}"
        _stream_table(dynamodb, name)
        table = dynamodb_backends["123456789012"]["us-east-1"].get_table(name)
        untouched = table.items[next(iter(table.items))]
        before = dict(untouched)
        expected = _state(dynamodb, name)
        patched = DynamoDBBackend.transact_write_items
        if path == "moto":
            DynamoDBBackend.transact_write_items = patched.__wrapped__  # type: ignore[attr-defined]
        try:
            with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
                dynamodb.transact_write_items(TransactItems=_transaction(name, fail=True))
            assert _state(dynamodb, name) == expected
            table = dynamodb_backends["123456789012"]["us-east-1"].get_table(name)
            kept = table.items[next(iter(table.items))]
            shared = {sk for sk, item in kept.items() if item is before.get(sk)}
            dynamodb.transact_write_items(TransactItems=_transaction(name, fail=False))
            outcomes[path] = (shared, _state(dynamodb, name))
        finally:
            DynamoDBBackend.transact_write_items = patched  # type: ignore[method-assign]
    fast_shared, fast_state = outcomes["fast"]
    moto_shared, moto_state = outcomes["moto"]
    assert fast_state == moto_state
    assert [sk["sk"]["S"] for sk in fast_state[0]] == ["0", "2", "3", "4", "new"]
    assert {str(k.value) for k in fast_shared} == {"3", "4"}  # not named: never copied
    assert moto_shared == set()


@pytest.mark.parametrize(
    "op",
    [
        {"Update": {"Key": {"pk": {"S": "plain"}}, "UpdateExpression": "SET x = :x"}},
        {"ConditionCheck": {"Key": {"pk": {"S": "plain"}}, "ConditionExpression": "attribute_exists(x)"}},
        {"Delete": {"Key": {"sk": {"N": "1"}}}},
    ],
    ids=["update", "condition", "delete"],
)
def test_a_transaction_naming_a_key_without_the_tables_key_attributes_is_refused_as_moto_does(table, op):
    """moto refuses a key that lacks one of the table's key attributes with a ValidationException, after copying
    its tables (found by review: the copy of the named items looked the key up first, and a KeyError escaped)."""
    ((kind, body),) = op.items()
    values = {"ExpressionAttributeValues": {":x": {"S": "y"}}} if kind == "Update" else {}
    items = [
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "added"}, "sk": {"N": "1"}}}},
        {kind: {"TableName": TABLE, **body, **values}},
    ]
    with pytest.raises(table.exceptions.ClientError) as refused:
        table.transact_write_items(TransactItems=items)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Item" not in table.get_item(TableName=TABLE, Key={"pk": {"S": "added"}, "sk": {"N": "1"}})
