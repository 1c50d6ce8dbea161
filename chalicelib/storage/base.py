"""The storage layer's base model, and how tables are pointed at the configured endpoint.

Every table is a PynamoDB model declared once, in its area.  Its logical name (``users``) is
fixed in code; the physical name is ``TABLE_PREFIX + logical name``, set with
the endpoint and region by :func:`configure_storage` from the settings, for the models it is
handed: storage imports no area (the full list is :mod:`chalicelib.models`).  The
local stack, the tests and ``infra/`` all derive their tables from these models
(see :mod:`chalicelib.storage.schema`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol, TypeVar

from pynamodb.models import Model

from chalicelib.settings import Settings

REGISTRY: list[type[BaseModel]] = []  # every table model imported so far (the manifest test compares)
M = TypeVar("M", bound=Model)
T = TypeVar("T")
MAX_ID_LENGTH = 100


class BaseModel(Model):
    """A Vigil table.  Subclasses set ``logical_name`` and declare ``class Meta``."""

    logical_name: ClassVar[str] = ""

    class Meta:
        abstract = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.logical_name:
            meta: Any = cls.Meta
            meta.table_name = cls.logical_name
            meta.billing_mode = "PAY_PER_REQUEST"
            # Every call has a timeout; a table may set a tighter budget in its own Meta.
            meta.connect_timeout_seconds = meta.__dict__.get("connect_timeout_seconds", 2)
            meta.read_timeout_seconds = meta.__dict__.get("read_timeout_seconds", 5)
            meta.max_retry_attempts = meta.__dict__.get("max_retry_attempts", 3)
            REGISTRY.append(cls)


def configure_storage(settings: Settings, models: Iterable[type[BaseModel]]) -> None:
    """Point each of ``models`` at the configured table prefix, region and endpoint."""
    for model in models:
        meta: Any = model.Meta
        wanted = (settings.table_prefix + model.logical_name, settings.home_region, settings.aws_endpoint_url)
        if (meta.table_name, meta.region, meta.host) == wanted and model._connection is not None:
            continue  # building a connection loads botocore's service model: ~40 ms a table
        meta.table_name, meta.region, meta.host = wanted
        model._connection = None  # rebuilt lazily with the new settings


def connect(models: Iterable[type[BaseModel]]) -> None:
    """Build each of ``models``' clients now, once per cold start, rather than on its first request.

    Building one loads botocore's DynamoDB model: ~50 ms of CPU a table on a free core, a second or more on a small
    Lambda's share of one.  Built lazily, the check worker paid it in the middle of its minute (its first change
    notes at the first start, its first pack write 15 s in), and every check then running measured the wait as its
    target's slowness.  Nothing is sent: a client is made, not used."""
    for model in models:
        _ = model._get_connection().connection.client


_connections: dict[tuple[str, str | None], Any] = {}


def transaction() -> Any:
    """A PynamoDB ``TransactWrite`` on the configured endpoint and region.

    The connection is kept: building one loads botocore's DynamoDB model (~150 ms).
    """
    from pynamodb.connection import Connection
    from pynamodb.transactions import TransactWrite

    from chalicelib.settings import get_settings

    settings = get_settings()
    key = (settings.home_region, settings.aws_endpoint_url)
    if key not in _connections:
        _connections[key] = Connection(
            region=key[0], host=key[1], connect_timeout_seconds=2, read_timeout_seconds=5, max_retry_attempts=3
        )
    return TransactWrite(connection=_connections[key])


class Counter(Protocol):
    """A step a caller adds to a write that adds or removes something counted (a plan's limit, ``billing.limits``):
    its own item of the transaction, and the judge of the transaction's refusal."""

    def add_to(self, t: Any) -> None: ...

    def check(self, exc: Exception) -> None: ...


def counted_transaction(counter: Counter | None, steps: Callable[[Any], None]) -> None:
    """One transaction of ``steps`` and ``counter``'s step; a refusal by the counter raised as it says (a 402)."""
    try:
        with transaction() as t:
            if counter is not None:
                counter.add_to(t)
            steps(t)
    except Exception as exc:
        if counter is not None:
            counter.check(exc)
        raise


def condition_failed(exc: Exception) -> bool:
    """True when a write or transaction failed only because a condition did not hold."""
    cause = getattr(exc, "cause_response_code", None)
    if cause == "ConditionalCheckFailedException":
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


def condition_failed_at(exc: Exception, index: int) -> bool:
    """True when a transaction was cancelled because the condition of its item ``index`` did not hold (in the order
    PynamoDB sends them: deletes and condition checks first, as each caller knows)."""
    reasons = getattr(exc, "cancellation_reasons", None) or []
    reason = reasons[index] if len(reasons) > index else None
    return reason is not None and reason.code == "ConditionalCheckFailed"


def load_team_item(model: type[M], team_id: str, item_id: str, what: str) -> M:
    """A team's item by its id, read consistently, or 404 ``No such <what>.``: another team's item does not exist
    for the caller, by construction.  An id that cannot be one (empty, too long) is 404 without a read."""
    from chalicelib import errors

    if not item_id or len(item_id) > MAX_ID_LENGTH:
        raise errors.NotFound(f"No such {what}.")
    try:
        return model.get(team_id, item_id, consistent_read=True)
    except model.DoesNotExist:
        raise errors.NotFound(f"No such {what}.") from None


def lost_race(exc: Exception) -> bool:
    """A conditional write or transaction that lost to a concurrent one: worth reloading and trying again."""
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return condition_failed(exc) or any(r is not None and r.code == "TransactionConflict" for r in reasons)


def retry_lost_races(attempt: Callable[[], T], *, attempts: int = 4, on_retry: Callable[[], None] | None = None) -> T:
    """Run ``attempt`` — which reads what it needs afresh — again when it loses a race to a concurrent write,
    after a short jittered pause.  Any other failure, and the last lost race, are raised."""
    for n in range(attempts):
        try:
            return attempt()
        except Exception as exc:
            if not lost_race(exc) or n == attempts - 1:
                raise
            if on_retry is not None:
                on_retry()
            time.sleep(random.uniform(0, 0.05 * 2**n))  # noqa: S311 - jitter, not a secret
    raise AssertionError("unreachable")


def as_domain_error(exc: Exception) -> Exception | None:
    """Storage failures that have a meaning for the caller: a lost race is a 409, an overloaded table a 503."""
    from pynamodb.exceptions import PynamoDBException

    from chalicelib import errors

    if not isinstance(exc, PynamoDBException):
        return None
    if condition_failed(exc):
        return errors.Conflict("The resource was changed by another request; reload it and try again.")
    code = exc.cause_response_code or ""
    if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
        return errors.ServiceUnavailable("The service is busy; try again shortly.", headers={"Retry-After": "1"})
    return None
