"""One table definition, two consumers.

:func:`table_properties` turns a model into the ``Properties`` of an
``AWS::DynamoDB::Table`` CloudFormation resource.  ``infra/`` is generated from it
(``make infra``) and the local stack and tests create their tables from the very
same dictionaries (:func:`create_tables`), so the two cannot drift without
``tests/unit/test_infra.py`` failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chalicelib.storage.base import BaseModel


def logical_id(model: type[BaseModel]) -> str:
    return "".join(part.capitalize() for part in model.logical_name.split("_")) + "Table"


def table_properties(model: type[BaseModel], table_name: Any) -> dict[str, Any]:
    schema: Any = model._get_schema()
    attributes = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}
    props: dict[str, Any] = {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": sorted(schema["key_schema"], key=lambda k: k["KeyType"]),
    }
    gsis = []
    for index in sorted(schema["global_secondary_indexes"], key=lambda i: i["index_name"]):
        for attr in index["attribute_definitions"]:
            attributes[attr["AttributeName"]] = attr["AttributeType"]
        gsis.append(
            {
                "IndexName": index["index_name"],
                "KeySchema": sorted(index["key_schema"], key=lambda k: k["KeyType"]),
                "Projection": index["projection"],
            }
        )
    props["AttributeDefinitions"] = [
        {"AttributeName": name, "AttributeType": kind} for name, kind in sorted(attributes.items())
    ]
    if gsis:
        props["GlobalSecondaryIndexes"] = gsis
    stream = getattr(model.Meta, "stream_view_type", None)
    if stream:
        props["StreamSpecification"] = {"StreamViewType": stream}
    ttl = model._ttl_attribute()
    if ttl is not None:
        props["TimeToLiveSpecification"] = {"AttributeName": ttl.attr_name, "Enabled": True}
    # Every table can be restored to any second of the last 35 days, unless its model says its items are
    # short-lived telemetry that is cheaper to lose than to back up (``Meta.point_in_time_recovery = False``).
    pitr = bool(getattr(model.Meta, "point_in_time_recovery", True))
    props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": pitr}
    props["SSESpecification"] = {"SSEEnabled": True}
    return props


def cfn_table_resources(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """The CloudFormation resources for the tables of ``models``, named from the TablePrefix parameter."""
    return {
        logical_id(model): {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            # Kept by the stack and by DynamoDB: deleting one takes turning this off first, on purpose.
            "Properties": {
                **table_properties(model, {"Fn::Sub": "${TablePrefix}" + model.logical_name}),
                "DeletionProtectionEnabled": True,
            },
        }
        for model in models
    }


def create_table_kwargs(props: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation table properties → the CreateTable API call (same field names)."""
    kwargs: dict[str, Any] = {
        key: props[key]
        for key in ("TableName", "BillingMode", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")
        if key in props
    }
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return kwargs


def create_tables(dynamodb: Any, prefix: str, models: Iterable[type[BaseModel]]) -> list[str]:
    """Create the tables of ``models`` (idempotently) through a boto3 DynamoDB client."""
    existing = set(dynamodb.list_tables().get("TableNames", []))
    created = []
    for model in models:
        props = table_properties(model, prefix + model.logical_name)
        name = props["TableName"]
        if name in existing:
            continue
        dynamodb.create_table(**create_table_kwargs(props))
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        created.append(name)
    return created
