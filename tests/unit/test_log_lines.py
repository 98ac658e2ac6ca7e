"""Log lines (outbox.observability): secret-looking values masked on every line, and
`log_context` binding values around a block, as structlog's bound_contextvars would."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from outbox.config import LoggingSettings
from outbox.observability import bound, configure_logging, log_context


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="json"), stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()


def logged(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secret_looking_keys_are_masked_on_every_line(lines: io.StringIO) -> None:
    log = structlog.get_logger("test")
    for _ in range(2):  # the second line is judged from what the first one learned
        with log_context(refresh_token="rt-1"):
            log.info("token event", password="pw", API_KEY="k", Authorization="Bearer b",
                     relay="default", seconds=0.5)
    for line in logged(lines):
        assert line["event"] == "token event"  # "event" itself is never masked
        assert [line[k] for k in ("password", "API_KEY", "Authorization", "refresh_token")] \
            == ["***"] * 4
        assert (line["relay"], line["seconds"], line["level"]) == ("default", 0.5, "info")
    assert len(logged(lines)) == 2


def test_a_context_rides_on_lines_inside_it_only(lines: io.StringIO) -> None:
    log = structlog.get_logger("test")
    with log_context(message="m1", attempt=1):
        with log_context(relay="default", attempt=2):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = logged(lines)
    assert (inner["message"], inner["relay"], inner["attempt"]) == ("m1", "default", 2)
    assert (outer["message"], outer["attempt"]) == ("m1", 1) and "relay" not in outer
    assert not {"message", "relay", "attempt"} & after.keys()


def test_a_context_is_given_back_when_its_block_raises() -> None:
    with log_context(request_id="outer"):
        with pytest.raises(RuntimeError), log_context(request_id="inner", relay="r"):
            raise RuntimeError("boom")
        assert bound() == {"request_id": "outer"}
    assert bound() == {}


def test_tasks_bound_at_once_keep_their_own_values() -> None:
    """As the worker binds each attempt in its own task: interleaved, never mixed."""
    seen: dict[str, str] = {}

    async def attempt(name: str) -> None:
        with log_context(message=name):
            await asyncio.sleep(0)
            with log_context(relay=f"relay-{name}"):
                await asyncio.sleep(0)
                seen[name] = f"{bound()['message']}/{bound()['relay']}"

    async def main() -> None:
        await asyncio.gather(*(attempt(str(n)) for n in range(5)))
        assert bound() == {}

    asyncio.run(main())
    assert seen == {str(n): f"{n}/relay-{n}" for n in range(5)}


def test_a_time_is_logged_in_iso_8601(lines: io.StringIO) -> None:
    until = datetime(2026, 12, 5, 15, 48, 53, 24819, tzinfo=UTC)
    structlog.get_logger("test").info("backing off", until=until, relay=object())
    (line,) = logged(lines)
    assert line["until"] == "2026-12-05T15:48:53.024819+00:00"
    assert line["relay"].startswith("<object object at")  # anything else: its repr
