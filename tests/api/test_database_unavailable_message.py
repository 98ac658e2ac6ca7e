"""What a 503 `database_unavailable` says to the client: nothing stored, or, after a
connection lost while committing, that it may be stored and how to retry safely
(the answers themselves: tests/e2e/test_database_outage_answers.py)."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request

from outbox.api.errors import outbox_error
from outbox.errors import CommitUncertain, DatabaseUnavailable


def _request(headers: dict[str, str]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/messages",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


async def _answer(exc: Exception, headers: dict[str, str]) -> tuple[int, str, str]:
    response = await outbox_error(_request(headers), exc)
    error = json.loads(bytes(response.body))["error"]
    return response.status_code, response.headers["Retry-After"], error["message"]


async def test_unavailable_says_nothing_was_stored() -> None:
    status, retry_after, message = await _answer(
        DatabaseUnavailable("the database is unavailable (ConnectionRefusedError: ...)"), {})
    assert (status, retry_after) == (503, "5")
    assert "nothing was stored" in message and "ConnectionRefusedError" not in message


@pytest.mark.parametrize(("headers", "advice"), [
    ({"Idempotency-Key": "k1"}, "retrying with the same Idempotency-Key is safe either way"),
    ({}, "check before repeating it"),
])
async def test_a_commit_of_unknown_outcome_never_says_nothing_was_stored(
        headers: dict[str, str], advice: str) -> None:
    status, _, message = await _answer(CommitUncertain(), headers)
    assert status == 503
    assert "nothing was stored" not in message
    assert "may or may not have been stored" in message and advice in message
