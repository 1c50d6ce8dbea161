"""The embedded emulator's DynamoDB answers (chalicelib.local.atomic): plain JSON written at once says exactly what
moto's own serializer says, and anything that is not plain JSON still takes moto's path."""

from __future__ import annotations

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


@pytest.fixture
def table(aws: Any) -> Any:
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
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
        nulls = table.get_item(TableName=TABLE, Key={"pk": {"S": "plain"}, "sk": {"N": "3"}})["Item"]
        assert nulls["nothing"] == {"NULL": True}
        assert nulls["null_text"] == {"S": "null"}
        with pytest.raises(table.exceptions.ResourceNotFoundException):
            table.get_item(TableName="no-such-table", Key=blob)
    assert fast == [], "bytes, a 'null' and an error are written by moto's serializer"


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


def test_consumed_capacity_is_a_float_as_moto_says(table):
    """moto's serializer writes a ``double`` member through float(): ``"CapacityUnits": 1.0``; json.dumps would write
    moto's int as ``1``, and botocore would hand the caller an int."""
    keys = {TABLE: {"Keys": [{"pk": {"S": "plain"}, "sk": {"N": "1"}}]}}
    with counting_fast_answers() as fast:
        quick = table.batch_get_item(RequestItems=keys, ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]
    assert not fast  # consumed capacity takes moto's path
    with moto_serializer_only():
        reference = table.batch_get_item(RequestItems=keys, ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]
    assert [type(c["CapacityUnits"]) for c in reference] == [float]
    assert [type(c["CapacityUnits"]) for c in quick] == [float]
