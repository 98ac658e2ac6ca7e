"""A real HTTP server for tests: `http.server.ThreadingHTTPServer` with a handler class,
on 127.0.0.1 (a free port unless one is given), served from a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHttp:
    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0,
                 poll_interval: float = 0.5) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        args=(poll_interval,), daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
