"""A real HTTP server for webhook tests: records every POST (path, headers, raw body)
on a free loopback port, in its own thread.

    with WebhookReceiver() as hooks:
        ... hooks.url ...
        hooks.wait_for(lambda r: r.json["type"] == "alert.raised")

`script` gives the statuses of the first requests (then `status`); `port` a fixed port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.http_thread import LoopbackHttp
from tests.processes import wait_until


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 200  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, status: int = 200, script: list[int] | None = None,
                 port: int = 0) -> None:
        self.status = status
        self.script = list(script or [])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else receiver.status
                    receiver.received.append(Received(self.path, dict(self.headers.items()),
                                                      body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._http = LoopbackHttp(Handler, port, poll_interval=0.05)

    @property
    def url(self) -> str:
        return f"{self._http.base}/hook"

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 30.0,
                 message: str = "a webhook request") -> Received:
        def found() -> Received | None:
            return next((r for r in self.requests() if predicate(r)), None)

        return wait_until(found, timeout=timeout, message=message)  # type: ignore[no-any-return]

    def start(self) -> WebhookReceiver:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
