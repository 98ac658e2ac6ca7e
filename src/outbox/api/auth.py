"""API keys on HTTP: `Authorization: Bearer <key>`, each key with scopes.

The key is checked by the service (`outbox.keys.authenticate`: keys of the
config file's `[auth] api_keys` and those made with `outbox keys create`);
here a route says which scope it needs. Each authenticated request also takes one
of the key's requests-per-minute tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from outbox.api.inflight import PRINCIPAL
from outbox.api.ratelimit import admit_request
from outbox.errors import ScopeMissing
from outbox.service import Outbox
from outbox.service.keys import Principal

__all__ = ["Principal", "require", "sender"]


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's key must carry `scope` (or admin), and be
    under its requests-per-minute limit (429 otherwise; api/ratelimit.py)."""

    async def check(request: Request) -> Principal:
        outbox: Outbox = request.app.state.outbox
        principal: Principal | None = request.scope.get(PRINCIPAL)  # api/inflight.py
        if principal is None:
            principal = await outbox.keys.authenticate(request.headers.get("authorization"))
        if scope not in principal.scopes and "admin" not in principal.scopes:
            raise ScopeMissing(f"this API key lacks the '{scope}' scope")
        await admit_request(request, principal)
        return principal

    return check


sender = require("send")  # the scope of submitting routes (api/direct.py calls it too)
