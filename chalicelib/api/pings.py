"""/v1/ping/{token}: a heartbeat monitor's job checks in (no auth: the token in the URL is the credential).

``GET``, ``POST`` or ``HEAD``, on the ping URL itself (the run went well), ``…/start`` (a run began) or ``…/fail``
(it failed).  The answer is a short ``OK`` in text, whatever the monitor's state; an unknown token is a 404.  A
POST's body is kept as an excerpt (``monitors.heartbeats.PING_BODY_KEEP``), with the source address and user
agent, in the monitor's ping log.

Rate limits: a monitor records at most one ping a second of each kind (the others are answered ``OK`` and not
recorded, so a storm costs reads, not writes); an address may make :data:`IP_LIMIT` pings of unknown tokens a
minute, then its pings of unknown tokens are a 429 with ``Retry-After`` until the minute ends.  The count is read
before each ping and written only on a 404: a valid ping writes no counter, and is never refused for what others
behind the same address (a NAT, a CI runner) sent; a scanner over the limit costs two reads and no write.
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib import errors
from chalicelib.api.framework import Call, Reply, Router
from chalicelib.clock import utcnow
from chalicelib.monitors import heartbeats
from chalicelib.ratelimit import service as ratelimit

router = Router("pings")

IP_LIMIT = 100  # unknown-token pings per minute and source address: a scanner, not a few deleted monitors' jobs
IP_WINDOW_SECONDS = 60
# A job may post its whole output: the excerpt is kept, the rest dropped, never the ping refused (Lambda's own
# limit on a request is 6 MB).
MAX_BODY_BYTES = 6 * 1024 * 1024
PATHS = {"ping": "/v1/ping/{token}", "start": "/v1/ping/{token}/start", "fail": "/v1/ping/{token}/fail"}
SUMMARIES = {
    "ping": "A heartbeat's job ran (no auth)",
    "start": "A heartbeat's job started a run (no auth)",
    "fail": "A heartbeat's job failed (no auth)",
}

DESCRIPTIONS = {
    "ping": "The run went well: the monitor is up, and its next ping is due within period + grace.  Answers `OK`.",
    "start": "A run began: it must end (a ping, or /fail) within the grace, or the monitor goes down.",
    "fail": "The run failed: the monitor goes down at once (an incident opens); its next ping brings it up.",
}


def _receive(kind: str) -> Callable[[Call, str], Reply]:
    def receive(call: Call, token: str) -> Reply:
        now = utcnow()
        counter = f"ping-ip#{call.client_ip}"
        window = ratelimit.peek(counter, IP_WINDOW_SECONDS, now)
        if window.count >= IP_LIMIT and not heartbeats.known(token):
            raise errors.TooManyRequests(
                window.resets_in, "Too many pings of unknown ping URLs from this address; try again later."
            )
        outcome = heartbeats.ping(
            heartbeats.Ping(
                token=token,
                kind=kind,
                at=now,
                source_ip=call.client_ip,
                user_agent=call.headers.get("user-agent"),
                body=call.raw_body if call.method == "POST" else b"",
            )
        )
        if outcome == heartbeats.UNKNOWN:
            ratelimit.hit(counter, IP_WINDOW_SECONDS, now)
            raise errors.NotFound("No heartbeat monitor has this ping URL.")
        return Reply(body="OK", content_type="text/plain; charset=utf-8")

    receive.__name__ = f"receive_{kind}"
    receive.__doc__ = DESCRIPTIONS[kind]
    return receive


for _kind, _path in PATHS.items():
    for _method in ("GET", "POST"):
        router.route(
            _method,
            _path,
            summary=SUMMARIES[_kind],
            auth="none",
            content_type="text/plain",
            errors=(404, 413, 429),
            max_body_bytes=MAX_BODY_BYTES,
        )(_receive(_kind))
