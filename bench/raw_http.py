"""A lean HTTP/1.1 keep-alive client for the benches' load: one connection, one
request at a time, the request's bytes built by hand.

The benches run on the same two cores as the server they measure. httpx spends
about 1-2 ms of CPU per request here, which the server then lacks, and which
counts in the latency a client sees. Like wrk or smtp-source, this client costs
next to nothing, so the figures are the server's. It understands what `outbox
serve` answers (a status line, headers, a Content-Length body) and nothing more:
anything else is an error, not a guess.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class RawHttpError(Exception):
    pass


class RawHttp:
    def __init__(self, host: str, port: int, token: str) -> None:
        self._host, self._port = host, port
        self._headers = (f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                         "Content-Type: application/json\r\n")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def for_url(cls, base_url: str, token: str) -> RawHttp:
        """`base_url`: http://host:port, as tests.processes gives it."""
        host, _, port = base_url.removeprefix("http://").rstrip("/").rpartition(":")
        return cls(host.strip("[]"), int(port), token)

    async def __aenter__(self) -> RawHttp:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        """(status, body) of POST `path` with `body` as JSON."""
        assert self._reader is not None and self._writer is not None, "use async with"
        payload = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\n{self._headers}"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        self._writer.write(head + payload)
        status_line = await self._reader.readline()
        parts = status_line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise RawHttpError(f"not an HTTP/1.1 answer: {status_line!r}")
        length = None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RawHttpError("an answer without Content-Length")
        return int(parts[1]), await self._reader.readexactly(length)
