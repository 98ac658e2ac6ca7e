"""The spooled JSON reader (api/spool.py) finds the `content_base64` values wherever
the body is cut into chunks, the key itself included, and skips the search when the
key is not in the body at all."""

from __future__ import annotations

import io
import json
from typing import Any

from outbox.api.spool import _read
from outbox.core.json_strings import StringSpans

DOCUMENT = json.dumps({"to": [f"r{n}@example.test" for n in range(20)], "attachments": [
    {"filename": "a.txt", "content_base64": "QUJD" * 30},
    {"filename": "b.txt", "content_base64": "REVG" * 10}]}).encode()


async def read_in(chunks: list[bytes]) -> Any:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return await _read(receive, io.BytesIO())


async def test_spans_are_found_on_every_cut_the_key_included() -> None:
    whole = StringSpans(b"content_base64")
    whole.feed(DOCUMENT)
    assert len(whole.spans) == 2
    for cut in range(len(DOCUMENT) + 1):
        assert await read_in([DOCUMENT[:cut], DOCUMENT[cut:]]) == whole.spans, cut


async def test_a_body_without_the_key_has_no_spans() -> None:
    body = json.dumps({"to": ["a@example.test"] * 1000, "text": "x"}).encode()
    assert await read_in([body[:100], body[100:]]) == []


async def test_a_client_that_goes_away_is_noticed() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert await _read(receive, io.BytesIO()) is None
