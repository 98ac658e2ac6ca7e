"""Per-key rate limits against real `outbox serve` processes, on SQLite and PostgreSQL:
429 with Retry-After and RateLimit-* headers, nothing queued over the limit, limits
from the config file and from `outbox keys create`, one bucket for every node."""

from __future__ import annotations

import smtplib
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Starter
from tests.processes import API_KEY, OutboxProcess, free_port

LIMITED_KEY = "ob_limited_key_4Fh8Wq2"
MESSAGE = {"from": "shop@example.test", "to": "ann@example.test", "subject": "Hi", "text": "x"}


def keys(**limits: int) -> dict[str, Any]:
    return {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read", "admin"]},
                         {"name": "limited", "key": LIMITED_KEY, "scopes": ["send", "read"],
                          **limits}]}


def submit(client: httpx.Client, n: int) -> httpx.Response:
    return client.post("/v1/messages", json={**MESSAGE, "subject": f"#{n}"},
                       headers={"Idempotency-Key": f"order-{n}"})


def queued_subjects(outbox: OutboxProcess) -> list[str]:
    with outbox.client() as client:
        listed = client.get("/v1/messages", params={"limit": 500}).json()["messages"]
    return sorted(m["subject"] for m in listed)


def test_a_key_limited_to_10_messages_a_minute_gets_429_on_the_11th_and_it_is_not_queued(
        start_outbox: Starter, closed_relay: dict[str, Any]) -> None:
    smtp = {"bind": f"127.0.0.1:{free_port()}", "security": "none"}  # loopback: no TLS needed
    outbox = start_outbox([closed_relay], auth=keys(messages_per_minute=10), submission=smtp)
    with outbox.client(LIMITED_KEY) as client:
        accepted = [submit(client, n) for n in range(1, 11)]
        refused = submit(client, 11)

    assert [r.status_code for r in accepted] == [202] * 10
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in accepted]
    assert remaining == list(range(9, -1, -1))
    assert accepted[0].headers["RateLimit-Limit"] == "10"
    assert accepted[0].headers["RateLimit-Policy"] == "10;w=60"
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 6  # one message every 6 s
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "10 messages per minute" in error["message"]
    assert queued_subjects(outbox) == sorted(f"#{n}" for n in range(1, 11))  # not #11
    with outbox.client() as unlimited:  # another key has its own (no) limit
        assert submit(unlimited, 12).status_code == 202

    over_smtp_and_in_a_batch(outbox, smtp["bind"])
    keys_made_at_run_time(outbox)


def over_smtp_and_in_a_batch(outbox: OutboxProcess, bind: str) -> None:
    """The same bucket for SMTP submission and batches: the key is still over its limit."""
    host, _, port = bind.rpartition(":")
    with smtplib.SMTP(host, int(port), timeout=30) as smtp:
        smtp.login("limited", LIMITED_KEY)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("shop@example.test", ["ann@example.test"],
                          b"Subject: #13\r\nMessage-ID: <m13@x.test>\r\n\r\nhi\r\n")
    assert refused.value.smtp_code == 451 and b"4.7.1" in refused.value.smtp_error
    assert b"10 messages per minute" in refused.value.smtp_error
    with outbox.client(LIMITED_KEY) as client:
        batch = client.post("/v1/messages/batch", json={"messages": [MESSAGE, MESSAGE]})
    assert batch.status_code == 429 and "Retry-After" in batch.headers
    assert len(queued_subjects(outbox)) == 11  # nothing of either


def keys_made_at_run_time(outbox: OutboxProcess) -> None:
    """A key made with POST /v1/keys (as `outbox keys create`: tests/integration/
    test_cli_webhooks.py) has its own limits."""
    with outbox.client() as admin:
        made = admin.post("/v1/keys", json={"name": "cron", "scopes": ["send", "read"],
                                             "messages_per_minute": 2,
                                             "requests_per_minute": 4})
    assert made.status_code == 201, made.text
    assert (made.json()["messages_per_minute"], made.json()["requests_per_minute"]) == (2, 4)
    with outbox.client(made.json()["key"]) as client:
        answers = [submit(client, 100 + n) for n in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]
        # Two limits: the headers describe the one with the fewest left (1 of 2 messages).
        assert (answers[0].headers["RateLimit-Limit"],
                answers[0].headers["RateLimit-Remaining"]) == ("2", "1")
        assert client.get("/v1/messages").status_code == 200  # the 4th request
        over = client.get("/v1/messages")
    assert over.status_code == 429 and "4 API requests per minute" in over.text
    assert int(over.headers["Retry-After"]) >= 1


def test_a_batch_waits_for_its_own_count_and_one_over_the_burst_gets_no_wait(
        start_outbox: Starter, closed_relay: dict[str, Any]) -> None:
    """3 a minute, used up by single sends: a batch of 2 waits for 2 tokens, longer
    than the single refused just before it (not that refusal's wait, remembered); a
    batch of 4 can never pass, so it is 422 without a Retry-After that would never
    come true. Nothing of either is queued."""
    outbox = start_outbox([closed_relay], auth=keys(messages_per_minute=3))
    with outbox.client(LIMITED_KEY) as client:
        assert [submit(client, n).status_code for n in range(1, 4)] == [202] * 3
        single = submit(client, 4)
        pair = client.post("/v1/messages/batch", json={"messages": [MESSAGE, MESSAGE]})
        four = client.post("/v1/messages/batch", json={"messages": [MESSAGE] * 4})

    assert single.status_code == pair.status_code == 429
    assert int(pair.headers["Retry-After"]) > int(single.headers["Retry-After"])  # 40 > 20
    assert four.status_code == 422 and "Retry-After" not in four.headers
    error = four.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert error["message"].startswith("4 messages at once are more than API key 'limited'")
    assert len(queued_subjects(outbox)) == 3


def test_every_node_takes_from_the_same_bucket(start_outbox: Starter,
                                               closed_relay: dict[str, Any]) -> None:
    first = start_outbox([closed_relay], auth=keys(messages_per_minute=10))
    second = start_outbox([], config={**first.config,
                                      "server": {"bind": f"127.0.0.1:{free_port()}"}})
    with first.client(LIMITED_KEY) as one, second.client(LIMITED_KEY) as two:
        answers = [submit(client, n).status_code
                   for n in range(12) for client in ((one, two)[n % 2],)]

    assert answers.count(202) == 10 and answers.count(429) == 2
    assert len(queued_subjects(first)) == 10
