"""The HTTP side of `outbox serve`: uvicorn with Outbox's connection limits on
pre-bound sockets, serving the API and the web UI. Loaded by `outbox serve` after
start-up recovery has run: its imports are the larger part of a start."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox.api.app import create_app
from outbox.api.connections import ConnectionGuard, accept_connections, protocol_for
from outbox.config import ServerSettings
from outbox.service import Outbox
from outbox.ui import create_ui


class Server(uvicorn.Server):
    """uvicorn with Outbox's connection limits and timeouts (`api.connections`), Outbox
    accepting on the pre-bound sockets; no signal handling of its own (the runtime owns
    SIGTERM/SIGINT)."""

    def __init__(self, app: ASGIApp, server: ServerSettings) -> None:
        self.guard = ConnectionGuard(server)
        self.protocol = protocol_for(self.guard)
        keepalive = max(1, round(server.keepalive_timeout.total_seconds()))
        super().__init__(uvicorn.Config(
            app, host=server.host, port=server.port, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=5, http=self.protocol,
            timeout_keep_alive=keepalive))
        self._acceptors: list[asyncio.Task[None]] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # uvicorn listens on nothing itself
        factory = functools.partial(self.protocol, config=self.config,
                                    server_state=self.server_state,
                                    app_state=self.lifespan.state)
        self._acceptors = [asyncio.create_task(accept_connections(s, factory, self.guard))
                           for s in sockets or []]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for task in self._acceptors:
            task.cancel()
        await asyncio.gather(*self._acceptors, return_exceptions=True)
        await super().shutdown(sockets=sockets)


def http_app(outbox: Outbox) -> ASGIApp:
    """The API, and the web UI at /ui (`[ui] enabled`), with / leading to the UI. The UI
    is beside the API, not inside it: the API's body limits and metrics are its own."""
    api = create_app(outbox)
    if not outbox.settings.ui.enabled:
        return api

    async def home(_: object) -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    ui = Starlette(routes=[Route("/", home), Route(UI_PATH, home),
                           Mount(UI_PATH, app=create_ui(outbox))])
    return ApiFirst(api, ui)


UI_PATH = "/ui"


class ApiFirst:
    """The UI's paths (/, /ui and below it) to the UI's app, every other request to the
    API, whose own 404 answers a path neither has in the API's error shape. Before,
    the UI's app held the API mounted at "" and every API request went through its
    error middlewares, its router and the mount, 3-4 % of serve's event loop
    (`bench/cpu_split.py --path http-lean`, three interleaved pairs: 318-337 against
    334-352 us a message, 1,586-1,693 against 1,559-1,629 msg/s)."""

    def __init__(self, api: ASGIApp, ui: ASGIApp) -> None:
        self.api, self.ui = api, ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _for_the_ui(scope["path"]):
            await self.ui(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def _for_the_ui(path: str) -> bool:
    return path in ("/", UI_PATH) or path.startswith(f"{UI_PATH}/")
