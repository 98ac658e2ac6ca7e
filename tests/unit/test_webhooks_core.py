"""core.webhooks, core.targets, core.signing: which events, their body, requests of a
batch, the retry schedule, the disabling streak, which targets, and signatures."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core import signing
from outbox.core.model import Event, EventType
from outbox.core.targets import TargetRefused, check_addresses, check_url, refusal
from outbox.core.webhooks import (
    WEBHOOK_EVENTS,
    DeliveryPolicy,
    EventFacts,
    Streak,
    UnknownEvent,
    after_results,
    event_payload,
    parse_event_id,
    parse_events,
    plan_requests,
    request_body,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFAULT = DeliveryPolicy()  # [webhooks]'s defaults (tests/integration/test_webhooks.py)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- events and bodies -------------------------------------------------------------------

def test_events_are_parsed_in_canonical_order_and_star_is_all() -> None:
    assert parse_events(["sent,failed", "queued"]) == ("queued", "sent", "failed")
    assert parse_events(["*"]) == WEBHOOK_EVENTS
    assert len(WEBHOOK_EVENTS) == 12 and "partially_sent" in WEBHOOK_EVENTS
    assert {"bounced", "complained", "unsubscribed"} <= set(WEBHOOK_EVENTS)
    for bad in (["claimed"], ["attempt"], [""], ["sent,opened"]):
        with pytest.raises(UnknownEvent):
            parse_events(bad)


@pytest.mark.parametrize(("text", "id"), [("evt_42", 42), ("42", 42), (" evt_7 ", 7),
                                          ("evt_", None), ("evt_x", None), ("wh_1", None),
                                          ("9" * 30, None)])
def test_event_ids(text: str, id: int | None) -> None:
    assert parse_event_id(text) == id


def test_a_sent_event_carries_the_message_the_recipient_the_reply_and_guidance() -> None:
    event = Event(at(0), EventType.SENT, 1, "ann@x.test", 250, "2.0.0", "ok queued", "sent")
    facts = EventFacts(42, event, "m1", "<m1@x.test>", {"order": "A-1", "_owner": "legacy"})
    body = event_payload(facts)
    assert body["id"] == "evt_42" and body["type"] == "sent"
    assert body["created_at"] == "2030-01-01T00:00:00Z"
    assert body["message"] == {"id": "m1", "message_id": "<m1@x.test>",
                               "metadata": {"order": "A-1"}}
    assert (body["recipient"], body["attempt"]) == ("ann@x.test", 1)
    assert body["reply"] == {"code": 250, "enhanced_code": "2.0.0", "text": "ok queued"}
    assert body["guidance"]["key"] == "sent" and body["guidance"]["next_step"]
    assert request_body([body], batched=False) is body
    assert request_body([body, body], batched=True) == {"events": [body, body]}


def test_a_message_event_has_no_reply_nor_guidance() -> None:
    body = event_payload(EventFacts(1, Event(at(0), EventType.QUEUED), "m1", "<m1@x>", {}))
    assert (body["recipient"], body["reply"], body["guidance"]) == (None, None, None)


# -- requests ------------------------------------------------------------------------------

def test_requests_carry_one_endpoints_events_up_to_its_batch_size() -> None:
    due = [(1, "a", 1), (2, "b", 3), (3, "a", 1), (4, "b", 3), (5, "b", 3), (6, "b", 3),
           (7, "c", 1)]
    assert plan_requests(due, 10) == [[1], [2, 4, 5], [3], [6], [7]]
    assert plan_requests(due, 2) == [[1], [2, 4, 5]]  # the rest waits for the next round
    assert plan_requests([], 3) == []


# -- retries and disabling -----------------------------------------------------------------

@pytest.mark.parametrize(("tries", "base"), [(1, 1), (2, 2), (3, 4), (10, 512), (12, 2048),
                                             (13, 3600), (40, 3600)])
def test_retries_double_from_a_second_up_to_an_hour(tries: int, base: float) -> None:
    waits = [(DEFAULT.next_try(tries, at(0), at(0), random.Random(seed)) or at(0)) - at(0)
             for seed in range(50)]
    assert all(0.8 * base <= w.total_seconds() <= min(1.2 * base, 3600) for w in waits)


def test_the_last_try_is_at_three_days_and_then_the_event_is_given_up() -> None:
    rng = random.Random(1)
    almost = at(3 * 86400 - 10)
    assert DEFAULT.next_try(50, at(0), almost, rng) == at(3 * 86400)
    assert DEFAULT.next_try(51, at(0), at(3 * 86400), rng) is None


@given(st.integers(1, 200), st.floats(0, 4 * 86400), st.integers(0, 10**6))
def test_no_wait_exceeds_max_delay_nor_the_deadline(tries: int, age: float, seed: int) -> None:
    now = at(age)
    next_at = DEFAULT.next_try(tries, at(0), now, random.Random(seed))
    if next_at is None:
        assert now >= at(0) + DEFAULT.max_age
    else:
        assert now <= next_at <= min(now + DEFAULT.max_delay, at(0) + DEFAULT.max_age)


def test_an_endpoint_is_disabled_after_20_failures_in_a_row_over_a_day() -> None:
    assert not DEFAULT.should_disable(19, at(0), at(2 * 86400))
    assert not DEFAULT.should_disable(500, at(0), at(86399))
    assert DEFAULT.should_disable(20, at(0), at(86400))
    assert not DEFAULT.should_disable(100, None, at(86400))
    assert not DeliveryPolicy(disable_after_failures=0).should_disable(10**6, at(0), at(10**7))


def test_a_success_ends_the_streak_whatever_order_results_arrive_in() -> None:
    streak = after_results(Streak(), [(False, at(5)), (False, at(1)), (False, at(3))])
    assert streak == Streak(3, at(1), None)
    assert after_results(streak, [(False, at(9)), (True, at(7))]) == Streak(1, at(9), at(7))


# -- targets ---------------------------------------------------------------------------------

ALLOW_TEN = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.1.1", "private"), ("172.16.0.1", "private"), ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.0.1", "not a public"), ("::ffff:127.0.0.1", "loopback"), ("fc00::1", "private"),
    ("240.0.0.1", "reserved")])
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address), ())
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), ()) is None


def test_allowed_networks_let_their_addresses_through_and_only_those() -> None:
    assert refusal(ipaddress.ip_address("10.9.9.9"), ALLOW_TEN) is None
    assert refusal(ipaddress.ip_address("192.168.0.1"), ALLOW_TEN) is not None
    assert refusal(ipaddress.ip_address("::ffff:10.0.0.1"), ALLOW_TEN) is None


def test_every_address_of_a_name_must_pass() -> None:
    check_addresses("ok.example", ["93.184.216.34"], ())
    with pytest.raises(TargetRefused, match=r"rebind\.example: 127\.0\.0\.1 is a loopback"):
        check_addresses("rebind.example", ["93.184.216.34", "127.0.0.1"], ())
    with pytest.raises(TargetRefused, match="no address"):
        check_addresses("none.example", [], ())


@pytest.mark.parametrize(("url", "target"), [
    ("https://hooks.example.com/x", ("hooks.example.com", 443)),
    ("http://hooks.example.com:8080/x?a=1", ("hooks.example.com", 8080)),
    ("http://[2606:2800:220:1::1]/", ("2606:2800:220:1::1", 80))])
def test_urls(url: str, target: tuple[str, int]) -> None:
    assert check_url(url) == target


@pytest.mark.parametrize("url", ["ftp://x.example/", "x.example/hook", "http:///path",
                                 "https://user:pw@x.example/", "http://x.example:99999/"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url(url)


# -- signatures ----------------------------------------------------------------------------

def test_the_event_signature_is_spec_s_hmac_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.event_signature("s3cret", 1700000000, body) == f"v1={expected}"
    header = signing.event_signature("s3cret", 1700000000, body)
    assert signing.verify_event("s3cret", "1700000000", header, body, 1700000100)
    assert signing.verify_event("s3cret", "1700000000", f"v1=00,{header}", body, 1700000000)
    assert not signing.verify_event("other", "1700000000", header, body, 1700000000)
    assert not signing.verify_event("s3cret", "1700000000", header, body + b" ", 1700000000)
    assert not signing.verify_event("s3cret", "1700000000", header, body, 1700000301)  # old
    assert not signing.verify_event("s3cret", "17e8", header, body, 1700000000)
