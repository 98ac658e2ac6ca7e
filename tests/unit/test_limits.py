"""Named limits on one message: recipients (counted before parsing, and again after
expansion) and extra headers; each refusal names the field, the limit and the key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outbox.core.compose import Limits, Submission, plan_message
from outbox.core.limits import check_headers, check_recipient_count, count_entries
from outbox.core.routing import RoutingTable
from outbox.errors import LimitExceeded, TooManyRecipients

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def plan(limits: Limits, **fields):
    values = {"sender": "me@example.com", "to": "bob@example.org", "text": "hi", **fields}
    return plan_message(Submission(**values), limits=limits,
                        routing=RoutingTable((), "default"), known_relays=["default"], now=NOW,
                        make_message_id=lambda domain: f"<id@{domain}>")


@pytest.mark.parametrize(("value", "count"), [
    (None, 0), ("", 0), ([], 0), ("a@x.test", 1), ("a@x.test, b@x.test; c@x.test", 3),
    (["a@x.test", "b@x.test, c@x.test"], 3), ('"Doe, John" <j@x.test>, k@x.test', 2),
    ("Team: a@x.test, b@x.test;", 2), ("a@x.test,,", 1), (["  "], 0),
])
def test_entries_are_counted_as_the_parser_splits_them(value, count) -> None:
    assert count_entries(value) == count


@pytest.mark.parametrize(("to", "cc", "bcc", "field"), [
    (3, 0, 0, "to"), (2, 1, 0, "cc"), (1, 1, 1, "bcc"), (0, 0, 3, "bcc"),
])
def test_the_field_that_crosses_the_limit_is_named(to: int, cc: int, bcc: int,
                                                   field: str) -> None:
    def addresses(n: int, kind: str) -> list[str]:
        return [f"{kind}{i}@x.test" for i in range(n)]

    with pytest.raises(TooManyRecipients) as caught:
        check_recipient_count([("to", addresses(to, "t")), ("cc", addresses(cc, "c")),
                               ("bcc", addresses(bcc, "b"))], 2)
    error = caught.value
    assert error.field == field and error.status == 422
    assert error.code == "too_many_recipients"
    assert "limits.max_recipients" in error.message and "limit of 2" in error.message
    assert "/v1/messages/batch" in error.message


def test_at_the_limit_a_message_is_planned() -> None:
    to = [f"r{i}@x.test" for i in range(1000)]
    assert len(plan(Limits(), to=to).recipients) == 1000


def test_one_over_the_default_limit_is_refused() -> None:
    to = [f"r{i}@x.test" for i in range(999)]
    with pytest.raises(TooManyRecipients, match="1,001 recipients, over the limit of 1,000"):
        plan(Limits(), to=to, cc="c1@x.test, c2@x.test")


def test_an_envelope_is_limited_too() -> None:
    with pytest.raises(TooManyRecipients) as caught:
        plan(Limits(max_recipients=2), envelope=["a@x.test", "b@x.test", "c@x.test"])
    assert caught.value.field == "envelope"


def test_headers_are_limited_by_count_and_size() -> None:
    check_headers({f"X-H{i}": "v" for i in range(100)}, 100, 8000)
    with pytest.raises(LimitExceeded, match=r"101 extra headers.*limits\.max_headers") as c:
        plan(Limits(), headers={f"X-H{i}": "v" for i in range(101)})
    assert c.value.field == "headers"
    with pytest.raises(LimitExceeded, match=r"limits\.max_header_size") as c:
        plan(Limits(), headers={"X-Big": "v" * 8000})
    assert c.value.field == "headers.X-Big"
