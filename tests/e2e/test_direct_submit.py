"""`POST /v1/messages` answers well-formed requests without Starlette's router and
FastAPI's generic handler (api/direct.py), and hands the rest on to them. The same
requests, sent to an app where every request takes the router and FastAPI's handler,
must get the same answers: status, headers and body, ids aside. Both apps are served by
uvicorn on loopback, over one service on SQLite."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from outbox.api import direct as direct_module
from outbox.api.app import create_app, router, service, submit_message
from outbox.api.auth import sender
from outbox.api.direct import FastSubmit, well_formed
from outbox.api.media import declared_methods_only, json_only
from outbox.api.schemas import MessageIn
from outbox.config import load_settings
from outbox.service import Outbox
from outbox.ui.app import create_ui
from tests.processes import API_KEY, TLS, base_config, free_port, write_config

READ_ONLY_KEY = "ob_read_only_key_7Qs"
LIMITED = {"direct": "ob_limited_direct_k3", "generic": "ob_limited_generic_k3"}
MESSAGE = {"from": "shop@example.test", "to": "ann@example.test", "subject": "Hi",
           "text": "Hello"}
RICH = {**MESSAGE, "to": ["Ann <ann@example.test>", "bob@example.test"],
        "cc": "carol@example.test; dan@example.test", "html": "<p>Hello</p>",
        "bcc": ["erin@example.test"], "reply_to": "help@example.test",
        "headers": {"X-Order": "42"}, "metadata": {"order": 42}, "relay": "default",
        "attachments": [{"filename": "a.txt", "content_base64": "aGVsbG8="}]}
JSON = {"Content-Type": "application/json"}


def requests(app: str) -> Iterator[tuple[str, dict[str, str], bytes]]:
    """(key, headers, body) of each request, in order; keys of this app alone."""
    plain = json.dumps(MESSAGE).encode()
    yield API_KEY, JSON, plain
    yield API_KEY, JSON, json.dumps(RICH).encode()
    yield API_KEY, {**JSON, "Idempotency-Key": f"{app}-order-1"}, plain
    yield API_KEY, {**JSON, "Idempotency-Key": f"{app}-order-1"}, plain  # a replay: 200
    yield API_KEY, {**JSON, "Idempotency-Key": f"{app}-order-1"}, b'{"from": "x@example.test"}'
    yield API_KEY, {**JSON, "Idempotency-Key": f"{app}-order-2"}, json.dumps(
        {**MESSAGE, "subject": "Other"}).encode()
    yield API_KEY, {**JSON, "Idempotency-Key": ""}, plain
    yield API_KEY, {**JSON, "Idempotency-Key": "k" * 256}, plain
    yield API_KEY, {"Content-Type": "application/merge-patch+json"}, plain
    yield API_KEY, {"Content-Type": "text/plain"}, plain
    yield API_KEY, {}, plain
    yield API_KEY, JSON, b'{"from": '
    yield API_KEY, JSON, b"[]"
    yield API_KEY, JSON, b""
    yield API_KEY, JSON, json.dumps({**MESSAGE, "colour": "red"}).encode()
    yield API_KEY, JSON, json.dumps({**MESSAGE, "to": "not an address"}).encode()
    yield API_KEY, JSON, json.dumps({**MESSAGE, "to": "ann@example.test\r\nBcc: x@y"}).encode()
    yield "", JSON, plain
    yield "ob_no_such_key", JSON, plain
    yield "", JSON, b'{"from": '  # FastAPI parses the body before it checks the key: 400
    yield "", JSON, b"{}"  # a body that parses: the key is checked before its fields
    yield READ_ONLY_KEY, JSON, plain
    yield LIMITED[app], JSON, plain
    yield LIMITED[app], JSON, plain  # over its one message a minute: 429


def comparable(response: httpx.Response, app: str) -> tuple[int, dict[str, str], Any]:
    headers = {name: value for name, value in response.headers.items()
               if name not in ("date", "x-request-id", "content-length")}
    if "ratelimit-reset" in headers:
        headers["ratelimit-reset"] = "<seconds>"
    text = response.text.replace(f"limited-{app}", "limited-<app>")  # the keys' names
    try:
        body = json.loads(text)
    except ValueError:
        return response.status_code, headers, text
    if isinstance(body, dict) and "id" in body:
        body = {**body, "id": "<id>", "message_id": "<message-id>"}
    return response.status_code, headers, body


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    keys = [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
            {"name": "viewer", "key": READ_ONLY_KEY, "scopes": ["read"]},
            *({"name": f"limited-{app}", "key": key, "scopes": ["send"],
               "messages_per_minute": 1} for app, key in LIMITED.items())]
    config = base_config(tmp_path, f"sqlite:///{tmp_path / 'outbox.db'}", [relay],
                         auth={"api_keys": keys},
                         logging={"level": "warning", "file": str(tmp_path / "outbox.log")})
    service = await Outbox.open(load_settings(str(write_config(tmp_path / "outbox.toml",
                                                                config))))
    try:
        yield service
    finally:
        await service.close()


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port: its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving


async def answers(app: Any, name: str) -> list[tuple[int, dict[str, str], Any]]:
    async with served(app) as base, httpx.AsyncClient(base_url=base, verify=TLS) as client:
        return [comparable(await client.post(
            "/v1/messages", content=body,
            headers={**headers, **({"Authorization": f"Bearer {key}"} if key else {})}),
            name)
            for key, headers, body in requests(name)]


async def test_the_direct_route_answers_every_request_as_fastapis_handler_does(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    looked_at: list[object] = []
    endpoint_calls: list[object] = []

    async def counted(request: Any) -> MessageIn | None:
        looked_at.append(request)
        return await well_formed(request)

    monkeypatch.setattr(direct_module, "well_formed", counted)
    direct = await answers(create_app(outbox), "direct")
    assert len(looked_at) == len(direct)  # each request looked at once, on the direct path

    async def passed_on(self: FastSubmit, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint_calls.append(scope["path"])
        await self.app(scope, receive, send)

    monkeypatch.setattr(FastSubmit, "__call__", passed_on)  # every request to the router
    monkeypatch.setattr(outbox.loops, "registry", CollectorRegistry())  # metrics anew
    generic = await answers(create_app(outbox), "generic")
    assert len(endpoint_calls) == len(generic) and len(looked_at) == len(direct)

    statuses = [status for status, _, _ in direct]
    assert statuses == [202, 202, 202, 200, 422, 202, 422, 422, 202, 415, 415, 400, 422,
                        422, 422, 422, 422, 401, 401, 400, 401, 403, 202, 429]
    for sent, mine, theirs in zip(requests("direct"), direct, generic, strict=True):
        assert mine == theirs, f"{sent}: {mine} != {theirs}"
    assert direct[3][1]["idempotent-replayed"] == "true"
    assert direct[-2][2]["status"] == "queued" and direct[-2][1]["ratelimit-limit"] == "1"


async def test_well_formed_submits_skip_the_router_and_the_rest_reach_it(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path is taken for what it can answer (else the comparison above proves
    nothing of it): FastAPI's handler of the route runs only for the requests handed on,
    and those reach it with their body (its 422 names the field it refused)."""
    handled: list[str] = []
    build = APIRoute.get_route_handler

    def counting(route: APIRoute) -> Any:
        handler = build(route)

        async def counted(request: Any) -> Any:
            if route.endpoint is submit_message:
                handled.append(request.headers.get("idempotency-key", ""))
            return await handler(request)

        return counted

    monkeypatch.setattr(APIRoute, "get_route_handler", counting)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with (served(create_app(outbox)) as base,
                httpx.AsyncClient(base_url=base, headers=auth, verify=TLS) as client):
        well = await client.post("/v1/messages", json=MESSAGE)
        assert well.status_code == 202 and handled == []
        extra = await client.post("/v1/messages", json={**MESSAGE, "colour": "red"})
        assert extra.status_code == 422 and "colour" in extra.text
        long_key = await client.post("/v1/messages", json=MESSAGE,
                                     headers={"Idempotency-Key": "k" * 256})
        assert long_key.status_code == 422 and handled == ["", "k" * 256]
        metrics = (await client.get("/metrics")).text
    counted = 'outbox_api_requests_total{code="%s",method="POST",route="/v1/messages"} %s'
    assert counted % (202, "1.0") in metrics and counted % (422, "2.0") in metrics


async def test_the_submit_route_has_the_dependencies_the_direct_route_handles(
        outbox: Outbox) -> None:
    """api/direct.py answers without FastAPI's solver, calling the key check itself;
    a dependency added to the route, or to every route, must be handled there too."""
    route = next(r for r in router.routes
                 if isinstance(r, APIRoute) and r.endpoint is submit_message)
    assert {d.call for d in route.dependant.dependencies} == {service, sender}
    assert [p.name for p in route.dependant.header_params] == ["idempotency_key"]
    assert route.body_field is not None and route.body_field.field_info.annotation is MessageIn
    outbox.loops.registry = CollectorRegistry()  # create_app registers its metrics there
    app_wide = {d.dependency for d in create_app(outbox).router.dependencies}
    assert app_wide == {declared_methods_only, json_only}


async def test_neither_app_asks_opentelemetry_for_its_providers(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's own telemetry is off (observability.NO_TELEMETRY): with it on, FastAPI
    asked OpenTelemetry for its providers on every request."""
    asked: list[str] = []

    def provider(name: str) -> Any:
        def ask(*_: Any) -> Any:
            asked.append(name)
            raise AssertionError(f"{name} asked for")
        return ask

    from opentelemetry import _logs, metrics, trace
    monkeypatch.setattr(trace, "get_tracer_provider", provider("tracer"))
    monkeypatch.setattr(metrics, "get_meter_provider", provider("meter"))
    monkeypatch.setattr(_logs, "get_logger_provider", provider("logger"))
    statuses = [status for status, _, _ in await answers(create_app(outbox), "direct")]
    assert statuses[:4] == [202, 202, 202, 200] and statuses[-2:] == [202, 429]
    async with (served(create_ui(outbox)) as base,
                httpx.AsyncClient(base_url=base, verify=TLS) as client):
        assert (await client.get("/login")).status_code == 200
    assert asked == []
