"""Where a small submit's CPU goes inside `outbox serve`, without sockets: the service
alone (`outbox.messages.submit`), and the same through the HTTP API's ASGI app (every
middleware, FastAPI's routing, dependencies and body handling), driven in-process.

    .venv/bin/python bench/api_cost.py [--messages 3000] [--reps 3]

Each rep opens a fresh SQLite queue in a temporary directory and submits --messages
1 KB messages, 20 at a time, after 200 to warm up. Prints the process CPU time per
submit (the event loop's and the SQLite writer thread's) for each way; their
difference is what the API layer costs before uvicorn and the socket add theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import API_KEY, base_config, write_config  # noqa: E402

from outbox.api.app import create_app  # noqa: E402
from outbox.api.schemas import MessageIn  # noqa: E402
from outbox.config import load_settings  # noqa: E402
from outbox.observability import configure_logging  # noqa: E402
from outbox.service import Outbox  # noqa: E402

CLIENTS = 20


def body(n: int) -> dict[str, Any]:
    return {"from": "bench@example.test", "to": f"user{n}@example.test",
            "subject": f"Bench {n}", "text": "x" * 900}


async def open_outbox(directory: Path) -> Outbox:
    relay = {"name": "default", "host": "127.0.0.1", "port": 1, "security": "none"}
    config = base_config(directory, f"sqlite:///{directory}/outbox.db", [relay],
                         logging={"level": "warning", "file": str(directory / "outbox.log")})
    settings = load_settings(str(write_config(directory / "outbox.toml", config)))
    configure_logging(settings.logging)
    return await Outbox.open(settings)


def through_service(outbox: Outbox) -> Callable[[int], Awaitable[None]]:
    async def submit(n: int) -> None:
        await outbox.messages.submit(MessageIn.model_validate(body(n)).to_submission(),
                                     owner="app")
    return submit


def through_api(outbox: Outbox) -> Callable[[int], Awaitable[None]]:
    app = create_app(outbox)
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {API_KEY}".encode()),
               (b"content-type", b"application/json")]

    async def submit(n: int) -> None:
        content = json.dumps(body(n)).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/messages",
                 "raw_path": b"/v1/messages", "query_string": b"", "root_path": "",
                 "headers": [*headers, (b"content-length", str(len(content)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8025)}
        delivered = False
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": content, "more_body": False}
            await asyncio.Event().wait()  # the client never hangs up
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [202]:
            raise RuntimeError(f"POST /v1/messages answered {statuses}")
    return submit


async def measure(way: str, count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        outbox = await open_outbox(Path(tmp))
        try:
            submit = (through_api if way == "api" else through_service)(outbox)
            for n in range(200):
                await submit(n)
            started = time.process_time()
            for first in range(1000, 1000 + count, CLIENTS):
                await asyncio.gather(*(submit(first + i) for i in range(CLIENTS)))
            return (time.process_time() - started) / count
        finally:
            await outbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for rep in range(1, args.reps + 1):
        service = asyncio.run(measure("service", args.messages))
        api = asyncio.run(measure("api", args.messages))
        print(f"rep {rep}: CPU per submit: service {service * 1e6:.0f} us, through the API's "
              f"ASGI app {api * 1e6:.0f} us (the API layer: {(api - service) * 1e6:.0f} us)",
              flush=True)


if __name__ == "__main__":
    main()
