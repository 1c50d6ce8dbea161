"""Who is calling: the identity the API layer passes to services."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    user_id: str
    team_id: str
    session_id: str | None = None
    kind: str = "user"  # "user" (an access token) or "api_key"
    role: str | None = None  # the role in team_id, read fresh on every request (team routes only)
    scopes: frozenset[str] = field(default_factory=frozenset)  # an API key's
    key_id: str | None = None  # the API key the caller used
