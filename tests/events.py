"""Lambda events as AWS delivers them, one builder per kind: DynamoDB stream records and SQS records.

A handler that takes records is called with a list of them; one that takes the whole event (as Lambda calls it)
with ``lambda_event(records)``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pynamodb.models import Model

from chalicelib.aws.clients import client
from chalicelib.local.loop import sqs_record as as_delivered

TTL_DELETION = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def stream_record(
    item: Model | dict[str, Any],
    *,
    event_name: str = "INSERT",
    sequence: int | str | None = None,
    by_ttl: bool = False,
) -> dict[str, Any]:
    """The stream record of one write of ``item`` (a model, or a raw image in DynamoDB JSON).

    A model's record carries its keys and its table's view type (a raw image: NEW_AND_OLD_IMAGES).  INSERT and
    MODIFY carry the item as the new image, REMOVE as the old one; ``by_ttl`` marks a deletion by the item's TTL,
    made by DynamoDB's own principal.  Every record has a sequence number no other has, unless given one.
    """
    number = str(uuid.uuid4().int if sequence is None else sequence)
    change: dict[str, Any] = {"SequenceNumber": number}
    if isinstance(item, Model):
        image = item.serialize()
        keys = [type(item)._hash_key_attribute(), type(item)._range_key_attribute()]
        change["Keys"] = {key.attr_name: image[key.attr_name] for key in keys if key is not None}
        view = type(item).Meta.stream_view_type
    else:
        image, view = item, "NEW_AND_OLD_IMAGES"
    change["OldImage" if event_name == "REMOVE" else "NewImage"] = image
    change["StreamViewType"] = view
    record = {"eventID": number, "eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": change}
    if by_ttl:
        record["userIdentity"] = TTL_DELETION
    return record


def stream_records(items: Iterable[Model | dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    """One stream record per item, in order (``options`` as for ``stream_record``, but no ``sequence``)."""
    return [stream_record(item, **options) for item in items]


def sqs_record(
    body: str,
    *,
    receive_count: int = 1,
    queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:test-queue",
) -> dict[str, Any]:
    """A message with ``body``, received for the ``receive_count``-th time, as Lambda hands it to its handler."""
    message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": str(uuid.uuid4()),
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": str(int(time.time() * 1000))},
    }
    return as_delivered(message, queue_arn)


def sqs_records(messages: Iterable[dict[str, Any]], queue_url: str) -> list[dict[str, Any]]:
    """Messages received from the queue (boto3's ``receive_message``), as Lambda hands them to its handler."""
    found = client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return [as_delivered(message, found["Attributes"]["QueueArn"]) for message in messages]


def lambda_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda invokes a stream or queue handler with."""
    return {"Records": list(records)}
