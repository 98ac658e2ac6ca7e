"""A relay that requires a login none is configured for, with a real worker, a real
store and a scripted aiosmtpd relay that answers MAIL with `530 5.7.0 Authentication
required`. A tester saw a loop: every minute the held mail was released ("relay ... is
usable again"), tried, refused and held again, while `outbox relay test` said "ok (no
login configured)" and released it too. Now the relay is marked needing attention once,
its mail stays held with guidance naming `outbox relay set-credentials`, and `relay
test` says what it could not check.

Settings are the production defaults but `poll_interval` (the worker's idle sleep)."""

from __future__ import annotations

import pytest
from tests.integration import test_throttle_spends_no_attempts as throttle_test
from tests.integration.test_relay_governor import Node
from tests.smtpd import ScriptedServer, reply

from outbox.cli.relays import _report_test
from outbox.config import RelaySettings
from outbox.core import guidance
from outbox.core.model import EventType, MessageStatus

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])

node = throttle_test.node  # the same fixture: one Outbox and worker on an injected clock

LOGIN_NEEDED = "530 5.7.0 Authentication required"


async def test_mail_refused_for_want_of_a_login_stays_held_until_an_operator_acts(
        node: object, capsys: pytest.CaptureFixture[str]) -> None:
    server = ScriptedServer(script=[reply("MAIL", LOGIN_NEEDED)]).start()
    try:
        n: Node = await node(RelaySettings(  # type: ignore[operator]
            name="r", host="127.0.0.1", port=server.port, security="none"))
        ids = await n.submit(3)
        await n.settle(ids)
        held = await n.messages(ids)
        assert {m.status for m in held} == {MessageStatus.HELD}
        assert {m.attempts for m in held} == {0}
        state = await n.outbox.store.relay_auth.load_relay_credentials("r")
        assert state.needs_attention and state.reason.startswith("530 5.7.0")
        assert state.guidance == guidance.LOGIN_REQUIRED
        words = guidance.describe(state.guidance)
        assert "requires a login and none is configured" in words.explanation
        assert "`outbox relay set-credentials NAME`" in words.next_step
        tried = server.commands.count("MAIL")

        # The worker's minute sweep (`release_left_held`) leaves it held: the relay is
        # not `ok`, so nothing is "usable again".
        assert await n.outbox.store.relay_auth.release_left_held("r", n.clock()) == 0
        n.clock.advance(3600)
        await n.settle(ids)
        assert {m.status for m in await n.messages(ids)} == {MessageStatus.HELD}
        assert server.commands.count("MAIL") == tried

        # `relay test` connects without a login, as configured: it says what it could
        # not check, and releases nothing.
        tested = await n.outbox.relays.test("r")
        assert tested.released == 0 and tested.refused_mail.startswith("530 5.7.0")
        _report_test(tested)
        said = capsys.readouterr().out
        assert "did not ask for a login at connect" in said
        assert (f"relay r: 127.0.0.1:{server.port} connected (no login configured); no "
                "mail sent\n") in said  # not "ok" beside "its mail stays held"
        assert "refused mail without one (530 5.7.0 Authentication required)" in said
        assert "sends no MAIL" in said and "outbox relay set-credentials r" in said
        await n.settle(ids)
        assert {m.status for m in await n.messages(ids)} == {MessageStatus.HELD}
        assert server.commands.count("MAIL") == tried

        # The relay is fixed to take mail without a login; the operator retries one
        # message, which delivers and so releases the rest.
        server.set_script()
        await n.outbox.messages.retry(ids[0])
        await n.settle(ids)
        sent = await n.messages(ids)
    finally:
        server.stop()
    assert {m.status for m in sent} == {MessageStatus.SENT}
    assert len(server.message_ids) == 3 and server.duplicates == 0
    events = (await n.outbox.messages.get(ids[1])).events
    assert [e.type for e in events].count(EventType.RELEASED) == 1
