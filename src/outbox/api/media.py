"""What the API says about the form of a request rather than its content:
415 for a JSON route given another content type, and 405 with `Allow` listing
every method the path takes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from outbox.errors import UnsupportedMediaType

BODY_METHODS = ("POST", "PUT", "PATCH")


def media_type(content_type: str) -> str:
    """`type/subtype` of a Content-Type, lower case, without its parameters."""
    return content_type.partition(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    """application/json, or a JSON-based type such as application/merge-patch+json."""
    media = media_type(content_type)
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


async def json_only(request: Request) -> None:
    """A dependency of every route: a route with a JSON body refuses a body of
    another content type, or of none, with 415."""
    route = request.scope.get("route")
    if (request.method not in BODY_METHODS or not isinstance(route, APIRoute)
            or route.body_field is None):
        return
    content_type = request.headers.get("content-type")
    path = request.url.path
    takes = "a JSON body" + OR_RAW.get(path, "")
    if content_type is None and _has_body(request):
        raise UnsupportedMediaType(f"this route takes {takes}; the request has no "
                                   "Content-Type", field="Content-Type")
    if content_type is not None and not is_json(content_type):
        raise UnsupportedMediaType(f"this route takes {takes}, not '{content_type[:100]}'"
                                   + _form_advice(content_type, path), field="Content-Type")


FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
RAW_MESSAGE = "/v1/messages/raw"  # also takes the message itself (api/rfc822.py)
OR_RAW = {RAW_MESSAGE: " or the message itself as message/rfc822"}


def _form_advice(content_type: str, path: str) -> str:
    """For a form (what `curl -F` and `curl -d` send): how to send this route its body
    instead, and, for a message, where its files go."""
    if media_type(content_type) not in FORMS:
        return ""
    if path == RAW_MESSAGE:
        return (": send the file as the body, with 'Content-Type: message/rfc822' "
                "(curl --data-binary @mail.eml)")
    files = ("; a file goes in by POST /v1/uploads first, and the message names its "
             "upload_id" if path.startswith("/v1/messages") else "")
    return ": send the fields as JSON, with 'Content-Type: application/json'" + files


async def declared_methods_only(request: Request) -> None:
    """A dependency of every route: a path the API publishes as it is (`/v1/messages/batch`)
    takes only its own methods, though a templated route (`/v1/messages/{id}`) would match
    it with another: `GET /v1/messages/batch` is 405, not "no message named batch"."""
    route = request.scope.get("route")
    path = request.url.path
    if not isinstance(route, APIRoute) or route.path_format == path:
        return
    own = _published(request).get(path)
    if own is not None and request.method.lower() not in own:
        raise HTTPException(405)


def published_methods(routers: Iterable[APIRouter]) -> dict[str, frozenset[str]]:
    """Path template → its published methods (lowercase), read from the routers an app
    includes as they are (no prefix added): the paths and methods `app.openapi()` lists,
    without building the document, which costs a third of a second of CPU at the first
    request of a process that needs this."""
    published: dict[str, set[str]] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                methods = published.setdefault(route.path, set())
                methods.update(m.lower() for m in route.methods or ())
    return {path: frozenset(methods) for path, methods in published.items()}


def _published(request: Request) -> Mapping[str, frozenset[str]]:
    published: Mapping[str, frozenset[str]] = request.app.state.published
    return published


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def allowed_methods(request: Request, named: str = "") -> str:
    """Every method the request's path takes, for a 405's `Allow` header: those of
    the published operations on this path (FastAPI nests included routers, so
    Starlette only names the first route's), with those it named (`named`); a path
    published as it is has only its own (`/v1/messages/batch` is not a message id)."""
    methods = {m.strip().upper() for m in named.split(",") if m.strip()}
    path = request.url.path
    published = _published(request)
    if path in published:  # a path published as it is: its own methods only
        methods = {m.upper() for m in published[path]}
    for template, operations in published.items():
        if path not in published and _template(template).fullmatch(path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


@lru_cache(maxsize=256)
def _template(path: str) -> re.Pattern[str]:
    """/v1/messages/{id} as a pattern that matches /v1/messages/abc."""
    parts = re.split(r"(\{[^}/]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))
