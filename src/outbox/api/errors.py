"""Every error leaves the API as {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.api.body_limit import BodyRefused, refusal_of
from outbox.api.media import allowed_methods
from outbox.api.ratelimit import refusal_headers
from outbox.api.schemas import UNKEEPABLE
from outbox.config import format_location
from outbox.errors import (
    AuthError,
    CommitUncertain,
    Conflict,
    DatabaseUnavailable,
    DirectoryError,
    IdempotencyInProgress,
    InputError,
    LinkExpired,
    NotFound,
    OutboxError,
    RateLimited,
    ScopeMissing,
    TooBusy,
)
from outbox.observability import Throttle

log = structlog.get_logger("outbox.api")
# One line per failing request, but not a flood: 20 a second, then a count.
SERVER_ERRORS = Throttle(burst=20, period=1.0)


# The 503 of every /v1 route, for the OpenAPI document (api/app.py adds the error shape).
UNAVAILABLE: dict[str, object] = {
    "description": "database_unavailable: the database cannot be reached, is restarting or "
    "is locked. Retry after Retry-After seconds. The message says whether the request was "
    "not carried out (nothing stored) or whether the connection was lost while committing "
    "(it may be stored; a retry with the same Idempotency-Key is safe either way).",
    "headers": {"Retry-After": {"description": "seconds to wait before the retry",
                                "schema": {"type": "integer"}}}}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _status_for(exc: OutboxError) -> int:
    if isinstance(exc, InputError):
        return exc.status
    if isinstance(exc, ScopeMissing):
        return 403
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, DirectoryError):
        return 502  # the LDAP directory, upstream of Outbox, failed
    if isinstance(exc, LinkExpired):
        return 410
    if isinstance(exc, RateLimited | TooBusy):
        return 429
    if isinstance(exc, DatabaseUnavailable):
        return 503
    return 500


async def outbox_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OutboxError)
    status = _status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimited):
        headers = refusal_headers(exc)
    elif isinstance(exc, TooBusy):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, IdempotencyInProgress):  # api/inflight.py
        headers = {"Retry-After": "1"}
    elif isinstance(exc, DatabaseUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    if status >= 500:
        log_server_error(request.method, request.url.path, exc.code, exc.one_line())
    return error_response(status, exc.code, client_message(exc, request),
                          getattr(exc, "field", None), headers)


def client_message(exc: OutboxError, request: Request) -> str:
    """The message for the client: the error's own, but for a database outage, which
    says what became of the request (the error's own names the driver's error)."""
    if isinstance(exc, CommitUncertain):
        retry = ("retrying with the same Idempotency-Key is safe either way"
                 if request.headers.get("idempotency-key") else
                 "check before repeating it (with an Idempotency-Key a retry is safe)")
        return ("the connection to the database was lost while the request was being "
                f"committed: it may or may not have been stored; {retry}")
    if isinstance(exc, DatabaseUnavailable):
        return ("the database is unavailable (unreachable, restarting or locked): the "
                "request was not accepted and nothing was stored; retry after "
                "Retry-After seconds")
    return exc.message


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = exc.errors()[0]
    if error.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the request body is not valid JSON: "
                              f"{error.get('ctx', {}).get('error', 'syntax error')}")
    loc = tuple(error.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    code, message, field = explain(error, loc)
    return error_response(422, code, message, field)


def explain(error: dict[str, Any], loc: tuple[Any, ...],
            prefix: str = "") -> tuple[str, str, str | None]:
    """One pydantic error as (code, message, field); `prefix` goes before the field
    (`messages[3]` for an item of a batch)."""
    loc = tuple(p for p in loc if p not in ("list[str]", "str", "function-after[_one_source()]"))
    if error.get("type") == UNKEEPABLE:  # the path inside the field (api.schemas.Strict)
        loc += tuple(error.get("ctx", {}).get("path", ()))
    field = format_location(loc) or None
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    return _code(error), _message(error, field), field


def _code(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    return {"extra_forbidden": "unknown_field", "missing": "missing_field"}.get(
        kind, "invalid_value")


def _message(error: dict[str, Any], field: str | None) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"unknown field '{field}'"
    if kind == "missing":  # no field: the body itself is missing
        return f"'{field}' is required" if field else "the request has no body: send a JSON object"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        # pydantic names its class ("a valid dictionary or instance of BatchMessageIn")
        text = "must be a JSON object"
    else:
        text = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field}: {text}" if field else text


def log_server_error(method: str, path: str, code: str, cause: str) -> None:
    """One line per request answered 5xx (throttled), naming the cause."""
    held = SERVER_ERRORS.admit(time.monotonic())
    if held is not None:
        log.error("request failed", method=method, path=path, code=code, cause=cause,
                  **({"suppressed": held} if held else {}))


class UnexpectedErrors:
    """The last catch, inside Starlette's: an exception no handler took becomes a JSON
    500 and one log line with its type and message, never a plain-text traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BodyRefused:
            raise  # answered by api.body_limit, outside
        except Exception as exc:
            cause = f"{type(exc).__name__}: {str(exc)[:300]}".replace("\n", " ")
            log_server_error(scope["method"], scope.get("path", ""), "internal_error", cause)
            if not started:
                response = error_response(500, "internal_error", "Outbox failed to answer "
                                          "this request; the log says why")
                await response(scope, receive, send)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    refusal = refusal_of(exc)
    if refusal is not None:  # a body over a limit, not a syntax error
        return error_response(refusal.status, refusal.code, refusal.message,
                              headers={"Connection": "close"})
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
    return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(OutboxError, outbox_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
