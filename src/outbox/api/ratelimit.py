"""Rate limits on HTTP: the RateLimit-* headers (IETF draft
draft-ietf-httpapi-ratelimit-headers) on every answer to a limited key, and 429.

    RateLimit-Limit: 10          the limit, per minute
    RateLimit-Remaining: 3       about how many are left now
    RateLimit-Reset: 42          seconds until the whole minute's worth is back
    RateLimit-Policy: 10;w=60    the policy: 10 per 60-second window
    Retry-After: 6               with 429 only: seconds until a retry can succeed

A request can be under two limits (requests, and messages when it submits
mail); the headers describe the one with the fewest left. The service decides
(`outbox.rate_limits`); `require` (api/auth.py) takes the request's token,
routes that queue mail take the messages' tokens with `admit_messages`, and the
middleware here writes the headers on the way out.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.errors import RateLimited
from outbox.service import Outbox
from outbox.service.keys import Principal
from outbox.service.ratelimits import Quota

STATE_KEY = "outbox_rate_limit"


def remember(request: Request, quota: Quota | None) -> None:
    """Keep the tighter quota of this request for its headers."""
    if quota is None:
        return
    known: Quota | None = getattr(request.state, STATE_KEY, None)
    if known is None or quota.remaining < known.remaining:
        setattr(request.state, STATE_KEY, quota)


async def admit_request(request: Request, principal: Principal) -> None:
    outbox: Outbox = request.app.state.outbox
    remember(request, await outbox.rate_limits.admit_request(principal))


async def admit_messages(request: Request, principal: Principal, count: int = 1) -> None:
    """Before queueing `count` messages: `RateLimited` (429) when they are over the
    key's limit, `LimitExceeded` (422) when more than its minute's worth, and then
    none is queued."""
    outbox: Outbox = request.app.state.outbox
    remember(request, await outbox.rate_limits.admit_messages(principal, count))


def quota_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset), "RateLimit-Policy": f"{limit};w=60"}


def refusal_headers(exc: RateLimited) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after),
            **quota_headers(exc.limit, exc.remaining, exc.reset)}


class RateLimitHeaders:
    """ASGI middleware: the RateLimit-* headers of the request's quota, if any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # the dict request.state writes into

        async def send_with_headers(message: Message) -> None:
            quota: Quota | None = state.get(STATE_KEY)
            if message["type"] == "http.response.start" and quota is not None:
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name.lower().encode(), value.encode()) for name, value
                            in quota_headers(quota.limit, quota.remaining, quota.reset).items()
                            if name.lower().encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
