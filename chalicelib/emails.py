"""Account emails, built by pure functions.  Links use APP_URL, never a request's Host."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def _link(app_url: str, path: str, token: str) -> str:
    return f"{app_url}{path}?{urlencode({'token': token})}"


def _html(paragraphs: list[str], link: str | None, label: str = "") -> str:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    if link is not None:
        body += (
            f'<p><a href="{escape(link, quote=True)}">{escape(label)}</a></p>'
            f"<p>Or paste this address into your browser: {escape(link)}</p>"
        )
    return (
        '<!doctype html><html lang="en"><body style="font-family:system-ui,sans-serif;line-height:1.5">'
        f"{body}<p>— Vigil</p></body></html>"
    )


def verification(app_url: str, token: str, hours: int) -> Email:
    link = _link(app_url, "/verify-email", token)
    lines = [
        "Welcome to Vigil. Please confirm your email address.",
        f"This link works once and expires in {hours} hours.",
    ]
    text = "\n\n".join([*lines, link, "If you did not create a Vigil account, ignore this email.", "— Vigil"])
    return Email("Confirm your email address", text, _html(lines, link, "Confirm my email"))


def password_reset(app_url: str, token: str, minutes: int) -> Email:
    link = _link(app_url, "/reset-password", token)
    lines = [
        "Someone asked to reset the password of your Vigil account.",
        f"This link works once and expires in {minutes} minutes. Using it signs you out everywhere.",
    ]
    text = "\n\n".join([*lines, link, "If it was not you, ignore this email: your password stays as it is.", "— Vigil"])
    return Email("Reset your Vigil password", text, _html(lines, link, "Choose a new password"))


def invitation_email(app_url: str, token: str, team: str, inviter: str, role: str, days: int) -> Email:
    link = _link(app_url, "/invitations/accept", token)
    lines = [
        f"{inviter} invited you to join the team {team} on Vigil as {role}.",
        f"This link works once, for this email address, and expires in {days} days.",
    ]
    text = "\n\n".join([*lines, link, "If you did not expect this, ignore this email.", "— Vigil"])
    return Email(f"Join {team} on Vigil", text, _html(lines, link, "Accept the invitation"))


def plan_changed(app_url: str, before: str, after: str, changes: list[str], *, payment_failed: bool) -> Email:
    """To a team's owner: its plan changed (and what a downgrade changed), or a payment failed."""
    link = f"{app_url}/settings/billing"
    if payment_failed:
        subject = "Your Vigil payment failed"
        lines = [
            f"The latest payment for your team's {after} plan failed. Please update your payment method:"
            " your monitors keep running for now."
        ]
    elif after == before:
        subject = f"Your Vigil plan: {after}"
        lines = [f"Your team's {after} plan was updated."]
    else:
        subject = f"Your Vigil plan is now {after}"
        lines = [f"Your team's plan changed from {before} to {after}."]
    if changes:
        lines.append("To fit its limits, nothing was deleted, and these monitors changed:")
        lines += [f"- {line}" for line in changes]
    text = "\n\n".join([*lines, link, "— Vigil"])
    return Email(subject, text, _html(lines, link, "Billing settings"))


def welcome(app_url: str) -> Email:
    """Once, when an address is first verified: the three next steps, each a link."""
    steps = [
        ("Add your first monitor", f"{app_url}/monitors/new"),
        ("Choose where alerts go (email, SMS, Slack, a webhook…)", f"{app_url}/alert-channels/new"),
        ("Publish a status page for your users", f"{app_url}/status-pages/new"),
    ]
    lines = ["Your email address is confirmed: welcome to Vigil.", "Three steps get you watched and alerted:"]
    text = "\n\n".join([*lines, *(f"{n}. {label}: {link}" for n, (label, link) in enumerate(steps, 1)), "— Vigil"])
    items = "".join(f'<li><a href="{escape(link, quote=True)}">{escape(label)}</a></li>' for label, link in steps)
    html = (
        '<!doctype html><html lang="en"><body style="font-family:system-ui,sans-serif;line-height:1.5">'
        + "".join(f"<p>{escape(p)}</p>" for p in lines)
        + f"<ol>{items}</ol><p>— Vigil</p></body></html>"
    )
    return Email("Welcome to Vigil", text, html)


def _masked(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"  # not even the length of the rest


def address_change(app_url: str, token: str, hours: int, current: str) -> Email:
    """To the new address of an account that asked to move to it: which account (masked), and that following the
    link makes this address sign in to it."""
    link = _link(app_url, "/verify-email", token)
    lines = [
        f"The Vigil account of {_masked(current)} asked to use this address instead.",
        "Confirming makes this address the one that signs in to that account and receives its email; until then the"
        f" account keeps its old address. This link works once and expires in {hours} hours.",
    ]
    text = "\n\n".join([*lines, link, "If you did not ask for this, ignore this email: nothing changes.", "— Vigil"])
    return Email("Confirm your new email address", text, _html(lines, link, "Use this address for my account"))


def address_in_use(app_url: str) -> Email:
    """To an address that already has an account, which another account asked to move to: nothing changed."""
    link = f"{app_url}/sign-in"
    lines = [
        "Someone asked to move another Vigil account to this address. This address already has a Vigil account,"
        " so nothing changed: it stays yours.",
        "If it was you, sign in with this address instead. If it was not, you need not do anything.",
    ]
    text = "\n\n".join([*lines, link, "— Vigil"])
    return Email("Someone tried to use your address on Vigil", text, _html(lines, link, "Sign in"))


def address_changed(new_address: str, contact: str) -> Email:
    """To the old address once an account moved away from it: the new one, masked, and what to do if it was not
    the owner."""
    lines = [
        f"The email address of your Vigil account was changed to {_masked(new_address)}. This address no longer"
        " signs in, and every other session of the account was signed out.",
        f"If you did not make this change, write to {contact} from this address at once: we will help you recover"
        " the account.",
    ]
    return Email("Your Vigil email address was changed", "\n\n".join([*lines, "— Vigil"]), _html(lines, None))
