"""Local-stage-only routes: the email outbox and a scheduler tick on demand.

``wiring.routers`` registers this router in the local stages only, so in a
deployed stage these paths do not exist: they get the 404 of any unknown path.
The router is hidden from the OpenAPI document for the same reason.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from chalicelib import errors
from chalicelib.api.framework import Call, Out, Router
from chalicelib.clock import isoz, utcnow
from chalicelib.local import stack
from chalicelib.settings import get_settings

router = Router("dev", hidden=True)


class OutboxMessage(Out):
    model_config = ConfigDict(extra="ignore", serialize_by_alias=True)

    id: str
    to: list[str]
    sender: str = Field(alias="from")
    subject: str
    date: str
    text: str
    html: str


class OutboxOut(Out):
    data: list[OutboxMessage]


class TickOut(Out):
    handlers: list[str]
    failed: list[str]
    regions_not_sent: list[str] = Field(description="regions whose check jobs the scheduler could not send")
    ran_at: str


@router.route("GET", "/dev/outbox", summary="Every email sent, newest first", auth="none", response=OutboxOut)
def outbox(call: Call) -> OutboxOut:
    """The emails the embedded SES emulator accepted (links are kept as links)."""
    if not stack.outbox_available(get_settings()):
        raise errors.NotFound("The outbox exists only with the embedded AWS emulator; AWS_ENDPOINT_URL is elsewhere.")
    from chalicelib.local.outbox import read_outbox

    return OutboxOut(data=[OutboxMessage.model_validate(message) for message in read_outbox()])


@router.route("POST", "/dev/tick", summary="Run the scheduler now", auth="none", response=TickOut, errors=(503,))
def tick(call: Call) -> TickOut:
    """Runs every scheduled handler at once, as if every active monitor were due, and returns when they are done."""
    loop = stack.current_loop()
    if loop is None:
        raise errors.ServiceUnavailable("No event loop runs in this process; start the local stack with `make dev`.")
    ran_at = isoz(utcnow()) or ""
    outcomes = loop.run_tick_now()
    not_sent = [
        region for o in outcomes if o.ok and isinstance(o.result, dict) for region in o.result.get("failed_regions", [])
    ]
    return TickOut(
        handlers=[o.name for o in outcomes],
        failed=[o.name for o in outcomes if not o.ok],
        regions_not_sent=not_sent,
        ran_at=ran_at,
    )
