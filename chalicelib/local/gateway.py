"""Chalice's local API Gateway, taught the greedy ``{proxy+}`` path that API Gateway has.

Chalice's local matcher knows only ``{name}`` segments, so without this an
unknown path would get Chalice's ``Missing Authentication Token`` 403 instead
of Vigil's 404 problem.  Exact and ``{name}`` routes win; ``/{proxy+}`` catches
the rest, as it does in API Gateway.
"""

from __future__ import annotations

import json
from typing import Any

from chalice.local import (
    ChaliceRequestHandler,
    LambdaEventConverter,
    LocalGateway,
    MatchResult,
    RouteMatcher,
)

from chalicelib import errors
from chalicelib.settings import get_settings

ALLOWED = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")  # what the app answers (API Gateway's ANY)


class GreedyRouteMatcher(RouteMatcher):
    def __init__(self, route_urls: list[str]) -> None:
        greedy = [u for u in route_urls if u.endswith("+}")]
        super().__init__([u for u in route_urls if u not in greedy])
        self.greedy = sorted(greedy, key=len, reverse=True)

    def match_route(self, url: str) -> MatchResult:
        try:
            return super().match_route(url)
        except ValueError:
            pass
        from urllib.parse import parse_qs, urlparse

        parsed = urlparse(url)
        path = parsed.path
        query = parse_qs(parsed.query, keep_blank_values=True)
        for route in self.greedy:
            prefix, _, name = route.rpartition("/{")
            if path.startswith(prefix + "/") and len(path) > len(prefix) + 1:
                return MatchResult(route, {name[:-1]: path[len(prefix) + 1 :]}, query)
        raise ValueError(f"No matching route found for: {url}")


class VigilGateway(LocalGateway):
    def __init__(self, app_object: Any, config: Any) -> None:
        super().__init__(app_object, config)
        self.event_converter = LambdaEventConverter(
            GreedyRouteMatcher(list(app_object.routes)), app_object.api.binary_types
        )


class VigilRequestHandler(ChaliceRequestHandler):
    # An answer is written as headers then body: with Nagle's algorithm the body waits for the client's delayed ACK
    # of the headers, 40 ms a request on a kept-alive connection (a schemathesis run spent most of its time so).
    disable_nagle_algorithm = True

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        self.local_gateway = VigilGateway(app_object, config)
        super(ChaliceRequestHandler, self).__init__(request, client_address, server)

    def __getattr__(self, name: str) -> Any:
        """A method the server has no ``do_<METHOD>`` for (TRACE, CONNECT, anything): 405 problem+json, as every
        other answer is, instead of http.server's 501 HTML page (API Gateway never passes such a method on)."""
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        """Answered without reading the request's body, so the connection closes after it: a body left unread would
        be read as the start of the next request on the same connection."""
        err = errors.MethodNotAllowed(f"{self.command} is not allowed on {self.path.split('?')[0]}.")
        body = json.dumps(errors.problem_document(err, get_settings().app_url)).encode()
        self.close_connection = True
        self.send_response(err.status)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Allow", ", ".join(ALLOWED))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """The app logs every request as JSON already; keep the console readable."""
