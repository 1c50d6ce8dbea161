"""The events Lambda hands a function, built from what boto3 reads: the local stack's event loop and the operators'
redrive (``infra/redrive.py``) invoke handlers with the same shapes Lambda does."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any


def arn_region(arn: str) -> str:
    return arn.split(":")[3]


def as_lambda_json(value: Any) -> Any:
    """boto3's parsed values → the JSON Lambda sends (binary as base64, times as epoch seconds)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {k: as_lambda_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [as_lambda_json(v) for v in value]
    return value


def stream_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    out = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        # The stream's own region: moto reports us-east-1 whatever the table's region is.
        "awsRegion": arn_region(stream_arn),
        "dynamodb": as_lambda_json(record["dynamodb"]),
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:  # TTL deletions carry the DynamoDB service principal
        out["userIdentity"] = record["userIdentity"]
    return out
