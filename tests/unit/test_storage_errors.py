"""Storage failures become domain errors: a lost race is a 409, throttling a 503, never a 500."""

from __future__ import annotations

from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError, UpdateError

from chalicelib import errors
from chalicelib.storage.base import as_domain_error


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"}}, "PutItem")


def test_a_failed_condition_is_a_conflict():
    assert isinstance(as_domain_error(PutError("x", _client_error("ConditionalCheckFailedException"))), errors.Conflict)


def test_throttling_is_service_unavailable_with_retry_after():
    err = as_domain_error(UpdateError("x", _client_error("ProvisionedThroughputExceededException")))
    assert isinstance(err, errors.ServiceUnavailable)
    assert err.headers["Retry-After"] == "1"


def test_anything_else_is_not_translated():
    assert as_domain_error(PutError("x", _client_error("ValidationException"))) is None
    assert as_domain_error(ValueError("x")) is None
