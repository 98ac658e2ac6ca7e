"""XOAUTH2 against a real aiosmtpd relay and a real HTTP token endpoint on loopback:
token caching, refresh on expiry, one refresh for a rejected token, failed
refreshes, rotation, the clock-skew check, and redaction."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from tests.integration.conftest import RelayFactory, ServerFactory
from tests.oauth_smtpd import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    Authority,
    TokenEndpoint,
    XOAuth2Handler,
)
from tests.smtpd import ScriptedServer

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.classify import classify
from outbox.core.model import OutcomeKind
from outbox.core.report import Condition, DeliveryReport, Stage
from outbox.delivery import oauth
from outbox.delivery.auth import authenticators_for
from outbox.delivery.oauth import TokenSource
from outbox.delivery.pool import SessionPool
from outbox.delivery.smtp.probe import probe

SENDER = "app@example.test"
RECIPIENT = "rcpt@example.test"
MESSAGE = b"Subject: hi\r\nMessage-ID: <oauth@example.test>\r\n\r\nhello\r\n"
REFRESH_TOKEN = "rt-initial-7Hq2"


@dataclass
class Provider:
    authority: Authority
    endpoint: TokenEndpoint
    server: ScriptedServer
    relay: RelaySettings

    def tokens(self, **options: object) -> TokenSource:
        assert self.relay.oauth2 is not None
        return TokenSource(self.relay.oauth2, **options)  # type: ignore[arg-type]


@pytest.fixture
def provider(smtp_server: ServerFactory, make_relay: RelayFactory) -> Iterator[Provider]:
    authority = Authority(refresh_tokens={REFRESH_TOKEN})
    with TokenEndpoint(authority) as endpoint:
        server = smtp_server(handler=XOAuth2Handler(authority), auth_mechanisms=())
        relay = make_relay(server, username=MAILBOX, oauth2={
            "token_url": endpoint.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN})
        yield Provider(authority, endpoint, server, relay)


@pytest.fixture
def one_message_per_session(delivery_settings: DeliverySettings) -> DeliverySettings:
    """Every delivery opens (and so logs in on) a session of its own."""
    return delivery_settings.model_copy(update={"messages_per_connection": 1})


async def deliver(provider: Provider, tokens: TokenSource,
                  delivery: DeliverySettings) -> DeliveryReport:
    async with SessionPool(provider.relay, delivery,
                           authenticators=authenticators_for(provider.relay, tokens)) as pool:
        return await pool.deliver(SENDER, [RECIPIENT], MESSAGE)


def assert_sent(report: DeliveryReport) -> None:
    assert report.failure is None, report.transcript
    assert report.data_reply is not None and report.data_reply.code == 250


async def test_xoauth2_delivers_and_reuses_its_cached_token_for_new_sessions(
        provider: Provider, one_message_per_session: DeliverySettings) -> None:
    tokens = provider.tokens()
    for _ in range(2):
        assert_sent(await deliver(provider, tokens, one_message_per_session))

    authority = provider.authority
    assert len(authority.token_requests) == 1
    assert authority.token_requests[0]["grant_type"] == "refresh_token"
    assert authority.accepted == [authority.issued[0]] * 2
    assert [log.authenticated_as for log in provider.server.connections] == [MAILBOX] * 2
    assert len(provider.server.messages) == 2


async def test_the_token_is_refreshed_once_it_is_about_to_expire(
        provider: Provider, one_message_per_session: DeliverySettings) -> None:
    provider.authority.expires_in = 120  # refreshed 12 s early (a tenth of its life)
    now = [1000.0]
    tokens = provider.tokens(clock=lambda: now[0])

    assert_sent(await deliver(provider, tokens, one_message_per_session))
    now[0] += 100  # still fresh
    assert_sent(await deliver(provider, tokens, one_message_per_session))
    assert len(provider.authority.token_requests) == 1
    now[0] += 10  # 110 s old: within the last tenth
    assert_sent(await deliver(provider, tokens, one_message_per_session))

    first, second = provider.authority.issued
    assert provider.authority.accepted == [first, first, second]
    assert len(provider.authority.token_requests) == 2


async def test_a_revoked_token_leads_to_exactly_one_refresh_then_success(
        provider: Provider, one_message_per_session: DeliverySettings) -> None:
    tokens = provider.tokens()
    assert_sent(await deliver(provider, tokens, one_message_per_session))
    revoked = provider.authority.issued[0]
    provider.authority.revoked.add(revoked)

    report = await deliver(provider, tokens, one_message_per_session)

    assert_sent(report)
    authority = provider.authority
    assert len(authority.token_requests) == 2
    assert authority.rejected == [revoked]
    assert authority.accepted == [revoked, authority.issued[1]]
    assert provider.server.connections[1].commands.count("AUTH") == 2
    assert "535 5.7.8" in report.transcript  # the rejection is shown, the token is not


async def test_a_token_still_refused_after_the_refresh_is_held_as_a_login_failure(
        provider: Provider, one_message_per_session: DeliverySettings) -> None:
    relay = provider.relay.model_copy(update={"username": "someone-else@example.test"})
    provider.relay = relay

    report = await deliver(provider, provider.tokens(), one_message_per_session)

    assert report.failure is not None and report.failure.stage is Stage.AUTH
    assert report.failure.reply is not None and report.failure.reply.code == 535
    assert len(provider.authority.token_requests) == 2  # the first token, one refresh
    outcome = classify(report)[RECIPIENT]
    assert outcome.kind is OutcomeKind.HELD
    assert provider.server.messages == []


async def test_a_dead_refresh_token_is_a_held_refresh_failure_quoting_the_endpoint(
        provider: Provider, delivery_settings: DeliverySettings) -> None:
    provider.authority.refresh_tokens.clear()

    report = await deliver(provider, provider.tokens(), delivery_settings)

    failure = report.failure
    assert failure is not None and failure.stage is Stage.AUTH
    assert failure.condition is Condition.TOKEN_REFRESH_FAILED
    assert "invalid_grant: Token has been expired or revoked." in failure.detail
    outcome = classify(report)[RECIPIENT]
    assert (outcome.kind, outcome.guidance) == (OutcomeKind.HELD, "token_refresh_failed")
    for secret in (REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in failure.detail and secret not in report.transcript
    assert "AUTH" not in provider.server.commands  # no token, no login attempt


async def test_an_unreachable_token_endpoint_defers_instead_of_holding(
        provider: Provider, delivery_settings: DeliverySettings) -> None:
    provider.endpoint.stop()

    report = await deliver(provider, provider.tokens(), delivery_settings)

    assert report.failure is not None
    assert report.failure.condition is Condition.TOKEN_ENDPOINT_UNAVAILABLE
    assert classify(report)[RECIPIENT].kind is OutcomeKind.DEFERRED


@pytest.mark.long(30)
async def test_a_token_endpoint_that_never_finishes_answering_defers_within_the_timeout(
        provider: Provider, delivery_settings: DeliverySettings) -> None:
    """At the production deadline (oauth.TIMEOUT): slow, but it only waits. A byte
    a second keeps every httpx read timeout happy; only the whole-request
    deadline ends it."""
    provider.authority.trickle = 1.0
    started = time.monotonic()
    report = await deliver(provider, provider.tokens(), delivery_settings)
    elapsed = time.monotonic() - started

    assert oauth.TIMEOUT <= elapsed < oauth.TIMEOUT + 10  # margin for a shared machine
    assert report.failure is not None
    assert (report.failure.stage, report.failure.condition) == (
        Stage.AUTH, Condition.TOKEN_ENDPOINT_UNAVAILABLE)
    assert "did not answer within" in report.failure.detail
    assert classify(report)[RECIPIENT].kind is OutcomeKind.DEFERRED
    assert "AUTH" not in provider.server.commands  # no token, no login attempt


async def test_a_rotated_refresh_token_is_handed_over_and_used_for_the_next_refresh(
        provider: Provider, one_message_per_session: DeliverySettings) -> None:
    provider.authority.rotate = True
    saved: list[str] = []

    async def save(token: str) -> None:
        saved.append(token)

    tokens = provider.tokens(on_rotate=save)
    assert_sent(await deliver(provider, tokens, one_message_per_session))
    provider.authority.revoked.add(provider.authority.issued[0])
    assert_sent(await deliver(provider, tokens, one_message_per_session))

    requests = provider.authority.token_requests
    assert [r["refresh_token"] for r in requests] == [REFRESH_TOKEN, saved[0]]
    assert len(saved) == 2 and REFRESH_TOKEN not in saved


@pytest.mark.parametrize("offset", [-600.0, 600.0])
async def test_a_token_endpoint_clock_ten_minutes_off_is_reported_as_skew(
        provider: Provider, delivery_settings: DeliverySettings, offset: float) -> None:
    provider.authority.date_offset = offset
    tokens = provider.tokens()

    assert_sent(await deliver(provider, tokens, delivery_settings))

    skew = tokens.take_skew()
    assert skew is not None
    assert abs(skew.skew + timedelta(seconds=offset)) < timedelta(seconds=5)
    assert "NTP" in skew.describe() and "token endpoint 127.0.0.1" in skew.describe()
    assert tokens.take_skew() is None  # reported once


async def test_a_correct_clock_is_not_reported(provider: Provider,
                                               delivery_settings: DeliverySettings) -> None:
    tokens = provider.tokens()
    assert_sent(await deliver(provider, tokens, delivery_settings))
    assert tokens.take_skew() is None


async def test_transcripts_show_the_mechanism_but_no_token(
        provider: Provider, one_message_per_session: DeliverySettings) -> None:
    tokens = provider.tokens()
    assert_sent(await deliver(provider, tokens, one_message_per_session))
    provider.authority.revoked.add(provider.authority.issued[0])
    report = await deliver(provider, tokens, one_message_per_session)

    assert "C: AUTH XOAUTH2 ***" in report.transcript
    assert "334 ***" in report.transcript
    for secret in provider.authority.secrets():
        assert secret not in report.transcript


async def test_probe_logs_in_with_xoauth2_without_sending(
        provider: Provider, delivery_settings: DeliverySettings) -> None:
    result = await probe(provider.relay, delivery_settings)

    assert result.ok, result.transcript
    assert result.info.auth_mechanism == "XOAUTH2"
    assert provider.server.messages == []
    assert not any(s in result.transcript for s in provider.authority.secrets())
