"""Every error leaves the API as {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from outbox.config import format_location
from outbox.errors import (
    AuthError,
    Conflict,
    DirectoryError,
    InputError,
    LinkExpired,
    NotFound,
    OutboxError,
    ScopeMissing,
)


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
    return 500


async def outbox_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OutboxError)
    status = _status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, getattr(exc, "field", None), headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = exc.errors()[0]
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the request body is not valid JSON: "
                              f"{error.get('ctx', {}).get('error', 'syntax error')}")
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    loc = tuple(p for p in loc if p not in ("list[str]", "str", "function-after[_one_source()]"))
    field = format_location(loc) or None
    message = _message(error, field)
    return error_response(422, _code(error), message, field)


def _code(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    return {"extra_forbidden": "unknown_field", "missing": "missing_field"}.get(
        kind, "invalid_value")


def _message(error: dict[str, Any], field: str | None) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"unknown field '{field}'"
    if kind == "missing":
        return f"'{field}' is required"
    text = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field}: {text}" if field else text


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


def install(app: FastAPI) -> None:
    app.add_exception_handler(OutboxError, outbox_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
