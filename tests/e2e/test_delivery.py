"""The foundation's promises against a real `outbox serve` and a real SMTP server,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from datetime import datetime
from email import policy
from typing import Any

import httpx
import pytest

from tests.pg import database
from tests.processes import OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer, delay, drop_mid_data, reply

FIRST_DELAY = 0.2
MAX_DELAY = 1.0
MAX_ATTEMPTS = 5
FINAL = {"sent", "failed", "partially_sent", "cancelled"}


class Env:
    def __init__(self, outbox: OutboxProcess, relay: ScriptedServer) -> None:
        self.outbox = outbox
        self.relay = relay

    def submit(self, **body: Any) -> dict[str, Any]:
        body.setdefault("from", "Shop <shop@example.test>")
        body.setdefault("subject", "Hello")
        body.setdefault("text", "hi")
        with self.outbox.client() as client:
            response = client.post("/v1/messages", json=body)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def get(self, id: str) -> dict[str, Any]:
        with self.outbox.client() as client:
            return dict(client.get(f"/v1/messages/{id}").json())

    def wait_final(self, id: str, timeout: float = 30) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            message = self.get(id)
            return message if message["status"] in FINAL else None

        return dict(wait_until(final, timeout=timeout, message=f"message {id} to finish"))

    def received(self, message_id: str) -> list[Any]:
        return [m for m in self.relay.messages if m.message_id == message_id]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("delivery")
    relay_server = ScriptedServer().start()
    relay = {"name": "default", "host": "127.0.0.1", "port": relay_server.port,
             "security": "none"}
    with database(request.param, directory) as url:
        config = base_config(directory, url, [relay],
                             retry={"first_delay": f"{int(FIRST_DELAY * 1000)}ms",
                                    "max_delay": f"{int(MAX_DELAY)}s",
                                    "max_attempts": MAX_ATTEMPTS, "max_age": "1h"},
                             # Short for the "too_slow" case, which waits out one; long
                             # enough that a busy machine's slow reply is no timeout (a 1 s
                             # one cut a 450 short here, with the suite on four workers).
                             delivery={"command_timeout": "3s", "data_timeout": "3s"})
        outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield Env(outbox, relay_server)
        finally:
            outbox.stop(timeout=10)
            relay_server.stop()


@pytest.fixture
def relay(env: Env) -> Iterator[ScriptedServer]:
    env.relay.set_script()
    yield env.relay
    env.relay.set_script()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_text_html_two_recipients_and_bcc_delivered_once_each(env: Env,
                                                               relay: ScriptedServer) -> None:
    accepted = env.submit(to=["Ann <ann@example.test>", "bob@example.test"],
                          bcc="hidden@example.test", subject="Résumé ready",
                          text="Plain body ✓", html="<p>HTML body ✓</p>")
    message = env.wait_final(accepted["id"])
    assert message["status"] == "sent"
    assert message["message_id"] == accepted["message_id"]
    received = env.received(accepted["message_id"])
    rcpts = [r for m in received for r in m.rcpt_tos]
    assert sorted(rcpts) == ["ann@example.test", "bob@example.test", "hidden@example.test"]
    parsed = email.message_from_bytes(received[0].data, policy=policy.default)
    assert parsed["Subject"] == "Résumé ready"
    assert parsed["Message-ID"] == accepted["message_id"]
    assert parsed["Bcc"] is None and b"hidden@example.test" not in received[0].data
    assert parsed.get_body(("plain",)).get_content().strip() == "Plain body ✓"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>HTML body ✓</p>"
    assert all(r["status"] == "sent" and r["reply_code"] == 250 for r in message["recipients"])


def test_451_twice_then_250_is_sent_after_three_attempts_on_schedule(
        env: Env, relay: ScriptedServer) -> None:
    relay.set_script(reply("DATA", "451 4.3.0 Try again later", times=2))
    accepted = env.submit(to="carol@example.test")
    message = env.wait_final(accepted["id"])
    assert message["status"] == "sent"
    assert message["attempts"] == 3
    events = message["events"]
    deferred = [e for e in events if e["type"] == "deferred"]
    claimed = [e for e in events if e["type"] == "claimed"]
    assert len(deferred) == 2 and len(claimed) == 3
    for n, event in enumerate(deferred, start=1):
        assert event["reply_code"] == 451 and event["enhanced_code"] == "4.3.0"
        assert event["guidance"], "a deferral explains itself"
        retry_at = parse_time(event["detail"].rsplit("next attempt at ", 1)[1])
        wait = (retry_at - parse_time(event["at"])).total_seconds()
        planned = min(FIRST_DELAY * 2 ** (n - 1), MAX_DELAY)
        assert planned * 0.8 - 0.01 <= wait <= planned * 1.2 + 0.01, (n, wait)
        # The next attempt does not start before its time.
        assert parse_time(claimed[n]["at"]) >= retry_at


def test_550_at_rcpt_for_one_recipient_is_partially_sent_and_never_retried(
        env: Env, relay: ScriptedServer) -> None:
    relay.set_script(reply("RCPT", "550 5.1.1 No such user", recipient="gone@example.test"),
                     reply("DATA", "451 4.3.0 Try again", times=1))
    accepted = env.submit(to=["dave@example.test", "gone@example.test"])
    message = env.wait_final(accepted["id"])
    assert message["status"] == "partially_sent"
    by_address = {r["address"]: r for r in message["recipients"]}
    assert by_address["dave@example.test"]["status"] == "sent"
    gone = by_address["gone@example.test"]
    assert gone["status"] == "failed" and gone["reply_code"] == 550
    assert "5.1.1" in (gone["enhanced_code"] or "") and gone["guidance"]
    assert message["attempts"] == 2  # the first DATA was deferred: dave was tried twice
    rcpt_lines = [e for e in message["events"] if e["recipient"] == "gone@example.test"]
    assert [e["type"] for e in rcpt_lines] == ["failed"], "the 550 recipient is tried once"


def test_550_at_data_fails_after_exactly_one_attempt(env: Env, relay: ScriptedServer) -> None:
    relay.set_script(reply("DATA", "550 5.7.1 Message rejected as spam", times=1))
    accepted = env.submit(to="erin@example.test")
    message = env.wait_final(accepted["id"])
    assert message["status"] == "failed"
    assert message["attempts"] == 1
    assert message["recipients"][0]["reply_code"] == 550
    assert env.received(accepted["message_id"]) == []


def test_4xx_forever_fails_after_exactly_max_attempts(env: Env, relay: ScriptedServer) -> None:
    relay.set_script(reply("RCPT", "450 4.2.1 Mailbox busy", recipient="busy@example.test"))
    accepted = env.submit(to="busy@example.test")
    message = env.wait_final(accepted["id"])
    assert message["status"] == "failed"
    assert message["attempts"] == MAX_ATTEMPTS
    assert len([e for e in message["events"] if e["type"] == "claimed"]) == MAX_ATTEMPTS
    final = message["recipients"][0]
    assert final["reply_code"] == 450
    assert "attempt" in (final["guidance"] or "").lower()


@pytest.mark.parametrize("trouble", ["dropped_mid_data", "too_slow", "throttled_421"])
def test_network_trouble_defers_then_sends_when_the_server_behaves(
        env: Env, relay: ScriptedServer, trouble: str) -> None:
    rule = {"dropped_mid_data": drop_mid_data(after_bytes=10),
            "too_slow": delay("DATA", 5.0),
            # At MAIL, since a pooled session may already be past its greeting.
            "throttled_421": reply("MAIL", "421 4.7.0 Too many messages, slow down")}[trouble]
    relay.set_script(rule)
    accepted = env.submit(to=f"{trouble}@example.test")
    wait_until(lambda: env.get(accepted["id"])["status"] == "deferred", timeout=20,
               message="a deferral")
    deferred = env.get(accepted["id"])
    assert deferred["recipients"][0]["guidance"]
    relay.set_script()
    message = env.wait_final(accepted["id"])
    assert message["status"] == "sent"
    # A throttled try waits without spending an attempt (core/decide.py): only the try
    # that delivered counts; the others were attempts.
    assert message["attempts"] == 1 if trouble == "throttled_421" else message["attempts"] >= 2


def test_connection_refused_defers_with_guidance_then_sends(
        start_outbox: Any, closed_relay: dict[str, Any]) -> None:
    outbox: OutboxProcess = start_outbox([closed_relay], retry={"first_delay": "300ms",
                                                                "max_delay": "1s"})
    client = outbox.client()
    accepted = client.post("/v1/messages", json={"from": "a@example.test",
                                                  "to": "b@example.test", "text": "x"}).json()

    def deferred() -> dict[str, Any] | None:
        message = client.get(f"/v1/messages/{accepted['id']}").json()
        return message if message["status"] == "deferred" else None

    message = wait_until(deferred, timeout=20, message="a deferral")
    assert "refused" in message["recipients"][0]["guidance"].lower()
    with ScriptedServer(port=closed_relay["port"]) as server:
        def sent() -> bool:
            return bool(client.get(f"/v1/messages/{accepted['id']}").json()["status"] == "sent")

        wait_until(sent, timeout=30, message="delivery once the relay listens")
        assert [m.message_id for m in server.messages] == [accepted["message_id"]]
    client.close()


def test_attempts_keep_a_transcript(env: Env, relay: ScriptedServer) -> None:
    accepted = env.submit(to="frank@example.test")
    env.wait_final(accepted["id"])
    with env.outbox.client() as client:
        attempts = client.get(f"/v1/messages/{accepted['id']}/attempts").json()
    assert len(attempts) == 1
    transcript = attempts[0]["transcript"]
    assert "MAIL FROM" in transcript and "RCPT TO" in transcript and "250" in transcript
    assert attempts[0]["outcome"] == "sent" and attempts[0]["relay"] == "default"


def test_cli_status_and_queue_ls_show_the_message(env: Env, relay: ScriptedServer) -> None:
    accepted = env.submit(to="gina@example.test")
    env.wait_final(accepted["id"])
    status = env.outbox.cli("status", accepted["id"])
    assert status.returncode == 0, status.stderr
    assert accepted["id"] in status.stdout and "sent" in status.stdout
    listing = env.outbox.cli("queue", "ls", "--status", "sent", "--limit", "500")
    assert listing.returncode == 0 and accepted["id"] in listing.stdout


def test_cli_status_shows_brackets_in_subjects_and_replies_as_written(
        env: Env, relay: ScriptedServer) -> None:
    """A subject and a relay's reply are data, not Rich markup: `[/]` made `outbox status`
    fail (MarkupError), and `[see ...]` or Outbox's own `[retry]` vanished."""
    relay.set_script(reply("RCPT", "550 5.7.1 Refused [/] [see https://example.test/why]",
                           recipient="jo@example.test"))
    accepted = env.submit(to="jo@example.test", subject="Offer [/] [bold]now")
    env.wait_final(accepted["id"])
    status = env.outbox.cli("status", accepted["id"])
    assert status.returncode == 0, status.stderr
    assert "subject     Offer [/] [bold]now" in status.stdout
    # Table cells fold across lines: compare without the tables' rules and spaces.
    flat = "".join(c for c in status.stdout if not c.isspace() and c not in "│┃━╇─┼")
    assert "Refused[/][seehttps://example.test/why]" in flat


def test_cli_send_prints_the_id_alone_on_the_last_line(env: Env, relay: ScriptedServer) -> None:
    result = env.outbox.cli("send", "--from", "ops@example.test", "--to", "hal@example.test",
                            "--subject", "From the CLI", "--text", "hello")
    assert result.returncode == 0, result.stderr
    id = result.stdout.strip().splitlines()[-1]
    assert env.wait_final(id)["status"] == "sent"


def test_cli_mistakes_are_one_line_without_traceback(env: Env) -> None:
    for args in (["send", "--from", "nobody", "--to", "x@example.test", "--text", "t"],
                 ["status", "no-such-id"], ["queue", "cancel", "no-such-id"],
                 ["queue", "ls", "--status", "bogus"]):
        result = env.outbox.cli(*args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr + result.stdout, args
        assert result.stderr.strip(), args


def test_retry_and_cancel_follow_the_state_rules(env: Env, relay: ScriptedServer) -> None:
    relay.set_script(reply("RCPT", "450 4.2.1 Busy", recipient="ivy@example.test"))
    accepted = env.submit(to="ivy@example.test")
    wait_until(lambda: env.get(accepted["id"])["status"] == "deferred", message="deferral")
    with env.outbox.client() as client:
        def cancel() -> httpx.Response | None:
            # 409 while a retry is in flight (`sending`); it is deferred again right after.
            response = client.post(f"/v1/messages/{accepted['id']}/cancel")
            return response if response.status_code != 409 else None

        cancelled = wait_until(cancel, message="a cancel between attempts")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = client.post(f"/v1/messages/{accepted['id']}/cancel")
        assert again.status_code == 409
    assert env.get(accepted["id"])["status"] == "cancelled"


# kill -9 during delivery: tests/e2e/test_crash_recovery.py (at the default lease).


def test_sigterm_drains_in_flight_delivery_within_the_grace_period(
        start_outbox: Any) -> None:
    with ScriptedServer(script=[delay("DATA", 1.5, times=1)]) as server:
        relay = {"name": "default", "host": "127.0.0.1", "port": server.port, "security": "none"}
        outbox: OutboxProcess = start_outbox([relay], delivery={"shutdown_grace": "5s"})
        with outbox.client() as client:
            accepted = client.post("/v1/messages", json={
                "from": "a@example.test", "to": "b@example.test", "text": "bye"}).json()
        wait_until(lambda: "DATA" in server.commands, message="the DATA command")
        started = time.monotonic()
        assert outbox.stop(timeout=15) == 0
        stopped_in = time.monotonic() - started
        assert server.message_ids[accepted["message_id"]] == 1
        restarted = start_outbox([relay], config=outbox.config)
        with restarted.client() as client:
            message = client.get(f"/v1/messages/{accepted['id']}").json()
        print(f"\nSIGTERM with a delivery in flight: stopped in {stopped_in:.1f}s, "
              f"message {message['status']}")
        # Drained, not abandoned: recorded as sent before exit, no uncertain event.
        assert message["status"] == "sent"
        assert not [e for e in message["events"] if e["type"] == "uncertain"]
