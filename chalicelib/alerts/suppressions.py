"""Addresses alert email no longer goes to, from SES's bounce and complaint events.

SES publishes a sending event (through the configuration set ``names.configuration_set``) to an SNS topic that
feeds the email feedback queue (``events/mail``).  A permanent bounce or a complaint suppresses each recipient it
names; a transient bounce (a full mailbox, a greylisting) suppresses nothing.  The email kind leaves a suppressed
address out of every alert, and an email channel shows its suppressed addresses.  Account email (verification,
password reset) is not held back: a person fixing their own address needs it, and SES's account-level
suppression list guards the sender's reputation there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from pynamodb.exceptions import DeleteError, PutError

from chalicelib import errors
from chalicelib.alerts.models import SuppressionModel
from chalicelib.observability import logger
from chalicelib.ratelimit import service as ratelimit
from chalicelib.storage.base import condition_failed

BOUNCE, COMPLAINT = "bounce", "complaint"
DETAIL_MAX = 300


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: str
    detail: str | None
    at: datetime


def _to(item: SuppressionModel) -> Suppression:
    return Suppression(address=item.address, reason=item.reason, detail=item.detail, at=item.at)


def of(addresses: list[str]) -> dict[str, Suppression]:
    """The suppressed ones among ``addresses`` (one BatchGetItem per 100)."""
    keys = list(dict.fromkeys(a.lower() for a in addresses))
    return {item.address: _to(item) for item in SuppressionModel.batch_get(keys)} if keys else {}


def suppress(address: str, reason: str, detail: str | None, at: datetime) -> None:
    """Record a suppression once (a later event keeps the first one's time); a complaint replaces a bounce, never
    the reverse (a conditional write: a bounce and a complaint arriving at once leave the complaint)."""
    item = SuppressionModel(address, reason=reason, detail=(detail or None) and detail[:DETAIL_MAX], at=at)
    condition = SuppressionModel.address.does_not_exist()
    if reason == COMPLAINT:
        condition |= SuppressionModel.reason == BOUNCE
    try:
        item.save(condition=condition)
    except PutError as exc:
        if not condition_failed(exc):
            raise


def _address(raw: Any) -> str | None:
    """The bare, lower-case address of a recipient as SES names it (``a@b`` or ``Name <a@b>``), or None."""
    address = parseaddr(str(raw or ""))[1].strip().lower()
    return address if "@" in address else None


def apply_event(event: dict[str, Any], now: datetime) -> list[str]:
    """Apply one SES event (event publishing's ``eventType``, or a notification's ``notificationType``); returns
    the addresses it suppressed.  Anything else (deliveries, transient bounces, unknown types) changes nothing."""
    kind = str(event.get("eventType") or event.get("notificationType") or "")
    suppressed: list[str] = []
    if kind == "Bounce":
        bounce = event.get("bounce") or {}
        if bounce.get("bounceType") != "Permanent":
            return []
        subtype = str(bounce.get("bounceSubType") or "")
        for recipient in bounce.get("bouncedRecipients") or []:
            address = _address(recipient.get("emailAddress"))
            if address:
                detail = " · ".join(p for p in (subtype, str(recipient.get("diagnosticCode") or "")) if p)
                suppress(address, BOUNCE, detail, now)
                suppressed.append(address)
    elif kind == "Complaint":
        complaint = event.get("complaint") or {}
        for recipient in complaint.get("complainedRecipients") or []:
            address = _address(recipient.get("emailAddress"))
            if address:
                suppress(address, COMPLAINT, complaint.get("complaintFeedbackType"), now)
                suppressed.append(address)
    if suppressed:
        logger.info("email addresses suppressed", extra={"reason": kind.lower(), "count": len(suppressed)})
    return suppressed


def lift(address: str, now: datetime) -> None:
    """Take back a bounce's suppression: the address works again (a mailbox made since, a typo fixed on the
    receiving side).  A complaint is the person asking not to be mailed: it is lifted only by support, by hand
    (409).  Once a day per address (429): a lift that bounces again adds to the sender's bounce rate."""
    address = address.strip().lower()
    found = of([address]).get(address)
    if found is None:
        raise errors.ValidationFailed.single("address", "is not suppressed")
    if found.reason == COMPLAINT:
        raise errors.Conflict(f"{address} marked an alert as spam: only Vigil's support lifts a complaint.")
    seen = ratelimit.hit(f"unsuppress:{address}", 86400, now)
    if seen.count > 1:
        raise errors.TooManyRequests(seen.resets_in, "This address was taken back once today; it bounced again.")
    try:
        SuppressionModel(address).delete(condition=SuppressionModel.reason == BOUNCE)
    except DeleteError as exc:
        if not condition_failed(exc):
            raise
        raise errors.Conflict(f"{address} marked an alert as spam: only Vigil's support lifts a complaint.") from None
    logger.info("email suppression lifted", extra={"reason": BOUNCE})
