"""The SMTP transport against the real scripted server: every reply recorded,
every failure mapped to its stage and condition, secrets never in transcripts."""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Callable
from datetime import timedelta

import aiosmtplib
import pytest
from tests.smtpd import ScriptedServer, closed_port, delay, drop, drop_mid_data, reply

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.report import Condition, DeliveryReport, Stage
from outbox.delivery.smtp import session as smtp_session
from outbox.delivery.smtp.errors import SessionError, failure_for
from outbox.delivery.smtp.hostnames import is_loopback
from outbox.delivery.smtp.probe import probe
from outbox.delivery.smtp.session import SmtpSession, open_session

ServerFactory = Callable[..., ScriptedServer]
RelayFactory = Callable[..., RelaySettings]

SENDER = "sender@x.test"
PASSWORD = "s3cret-Pa55word!"


@pytest.fixture(params=[False, True], ids=["one-at-a-time", "pipelined"])
def smtp_server(smtp_server: ServerFactory, request: pytest.FixtureRequest) -> ServerFactory:
    """Every test here twice: against a relay without PIPELINING, and with it (RFC 2920:
    MAIL, RCPT and DATA in one write, the same report expected)."""
    def start(**options: object) -> ScriptedServer:
        options.setdefault("pipelining", request.param)
        return smtp_server(**options)

    return start


def make_message(message_id: str = "<m1@x.test>", body: bytes = b"Hello.\r\n") -> bytes:
    return (b"From: sender@x.test\r\nTo: b@x.test\r\nSubject: test\r\n"
            b"Message-ID: " + message_id.encode() + b"\r\n\r\n" + body)


def big_message(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return make_message(body=line * (size // len(line)))


def fast(delivery: DeliverySettings, **timeouts: float) -> DeliverySettings:
    return delivery.model_copy(update={k: timedelta(seconds=v) for k, v in timeouts.items()})


async def send_one(relay: RelaySettings, delivery: DeliverySettings, recipients: list[str],
                   message: bytes | None = None) -> DeliveryReport:
    session = await open_session(relay, delivery)
    try:
        return await session.send(SENDER, recipients, message or make_message())
    finally:
        await session.close()


async def open_failure(relay: RelaySettings, delivery: DeliverySettings) -> SessionError:
    with pytest.raises(SessionError) as caught:
        await open_session(relay, delivery)
    return caught.value


# --- replies ------------------------------------------------------------------------------

async def test_two_recipients_each_reply_recorded(smtp_server: ServerFactory,
                                                  make_relay: RelayFactory,
                                                  delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test", "c@x.test"])

    assert report.failure is None
    assert report.mail_reply is not None and report.mail_reply.code == 250
    assert {r: (reply.code, reply.enhanced) for r, reply in report.rcpt_replies.items()} == {
        "b@x.test": (250, "2.1.5"), "c@x.test": (250, "2.1.5")}
    assert report.data_reply is not None and report.data_reply.code == 250
    assert report.data_sent is True
    [received] = server.messages
    assert received.rcpt_tos == ("b@x.test", "c@x.test")
    assert received.mail_from == SENDER
    assert server.message_ids == {"<m1@x.test>": 1}


async def test_550_for_one_recipient_still_sends_data_for_the_other(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("RCPT", "550 5.1.1 No such user", recipient="b@x.test")])
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test", "c@x.test"])

    refused = report.rcpt_replies["b@x.test"]
    assert (refused.code, refused.enhanced, refused.text) == (550, "5.1.1", "No such user")
    assert report.rcpt_replies["c@x.test"].code == 250
    assert report.data_reply is not None and report.data_reply.code == 250
    assert [m.rcpt_tos for m in server.messages] == [("c@x.test",)]


async def test_no_data_when_every_recipient_is_refused(smtp_server: ServerFactory,
                                                       make_relay: RelayFactory,
                                                       delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("RCPT", "550 5.1.1 No such user")])
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test", "c@x.test"])

    assert [r.code for r in report.rcpt_replies.values()] == [550, 550]
    assert report.data_reply is None and report.data_sent is False and report.failure is None
    assert server.messages == []
    if server.handler.pipelining:  # DATA went with the RCPTs; the relay refused it, and
        assert "S: 503" in report.transcript  # the session stayed in step: a polite QUIT
        assert server.commands == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    else:
        assert "DATA" not in server.commands


@pytest.mark.smtp_script(reply("MAIL", "451 4.7.1 Greylisted, try later"))
async def test_mail_refused_is_recorded_and_nothing_else_sent(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server()  # the script comes from the marker
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test"])

    assert report.mail_reply is not None
    assert (report.mail_reply.code, report.mail_reply.enhanced) == (451, "4.7.1")
    assert report.rcpt_replies == {} and report.failure is None
    assert server.messages == []
    if server.handler.pipelining:  # RCPT and DATA went with MAIL: the session hangs up
        assert server.commands[:2] == ["EHLO", "MAIL"] and "QUIT" not in server.commands
        assert "hung up, nothing was sent" in report.transcript
    else:
        assert "RCPT" not in server.commands


async def test_451_at_data_is_the_data_reply(smtp_server: ServerFactory,
                                             make_relay: RelayFactory,
                                             delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("DATA", "451 4.3.0 Try again later", times=1)])
    relay = make_relay(server)
    first = await send_one(relay, delivery_settings, ["b@x.test"])
    second = await send_one(relay, delivery_settings, ["b@x.test"])

    assert first.data_reply is not None
    assert (first.data_reply.code, first.data_reply.enhanced) == (451, "4.3.0")
    assert first.data_sent is True and first.failure is None
    assert second.data_reply is not None and second.data_reply.code == 250
    assert len(server.messages) == 1


async def test_dot_stuffing_round_trips(smtp_server: ServerFactory, make_relay: RelayFactory,
                                        delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    body = b".leading dot\r\n..two dots\r\n.\r\nlast line without CRLF"
    await send_one(make_relay(server), delivery_settings, ["b@x.test"], make_message(body=body))

    [received] = server.messages
    assert received.data == make_message(body=body) + b"\r\n"


# --- connection failures ------------------------------------------------------------------

async def test_drop_after_final_dot_is_after_data_with_data_sent(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[drop("DATA", times=1)])
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test"])

    assert report.data_sent is True
    assert report.failure is not None
    assert report.failure.stage is Stage.AFTER_DATA
    assert report.failure.condition is Condition.CONNECTION_DROPPED
    assert report.data_reply is None
    assert len(server.messages) == 1  # the relay has it; Outbox cannot know


async def test_drop_mid_data_is_data_stage_without_data_sent(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[drop_mid_data(after_bytes=64 * 1024)])
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test"],
                            big_message(24_000_000))

    assert report.data_sent is False
    assert report.failure is not None
    assert report.failure.stage is Stage.DATA
    assert report.failure.condition is Condition.CONNECTION_DROPPED
    assert server.messages == []


async def test_slow_reply_to_mail_is_a_command_timeout(smtp_server: ServerFactory,
                                                       make_relay: RelayFactory,
                                                       delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[delay("MAIL", 1.0)])
    report = await send_one(make_relay(server), fast(delivery_settings, command_timeout=0.2),
                            ["b@x.test"])

    assert report.failure is not None
    assert (report.failure.stage, report.failure.condition) == (Stage.MAIL,
                                                                Condition.COMMAND_TIMEOUT)
    assert report.data_sent is False


async def test_slow_reply_after_final_dot_is_after_data_timeout(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[delay("DATA", 1.0)])
    report = await send_one(make_relay(server), fast(delivery_settings, data_timeout=0.2),
                            ["b@x.test"])

    assert report.data_sent is True
    assert report.failure is not None
    assert (report.failure.stage, report.failure.condition) == (Stage.AFTER_DATA,
                                                                Condition.COMMAND_TIMEOUT)


async def test_slow_greeting_is_a_connection_timeout(smtp_server: ServerFactory,
                                                     make_relay: RelayFactory,
                                                     delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[delay("GREETING", 1.0)])
    error = await open_failure(make_relay(server), fast(delivery_settings, connect_timeout=0.2))

    # Connected, then no greeting: the greeting's stage, not a firewall at connect.
    assert (error.failure.stage, error.failure.condition) == (Stage.GREETING,
                                                              Condition.CONNECTION_TIMEOUT)


async def test_connection_refused(make_relay: RelayFactory,
                                  delivery_settings: DeliverySettings) -> None:
    relay = RelaySettings(name="closed", host="127.0.0.1", port=closed_port(), security="none")
    error = await open_failure(relay, delivery_settings)

    assert error.failure.stage is Stage.CONNECT
    assert error.failure.condition is Condition.CONNECTION_REFUSED
    assert "failed at connect" in error.transcript


async def test_421_greeting_is_a_greeting_reply(smtp_server: ServerFactory,
                                                make_relay: RelayFactory,
                                                delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("GREETING", "421 4.3.2 Too busy, try later")])
    error = await open_failure(make_relay(server), delivery_settings)

    assert error.failure.stage is Stage.GREETING
    assert error.failure.reply is not None
    assert (error.failure.reply.code, error.failure.reply.enhanced) == (421, "4.3.2")


async def test_ehlo_refused_falls_back_to_helo(smtp_server: ServerFactory,
                                               make_relay: RelayFactory,
                                               delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("EHLO", "502 5.5.1 EHLO not implemented")])
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test"])

    assert report.failure is None and report.data_reply is not None
    assert server.commands[:3] == ["EHLO", "HELO", "MAIL"]


# --- TLS ----------------------------------------------------------------------------------

async def test_starttls_with_a_private_ca(smtp_server: ServerFactory, make_relay: RelayFactory,
                                          delivery_settings: DeliverySettings) -> None:
    server = smtp_server(tls="starttls", require_starttls=True)
    relay = make_relay(server)
    assert relay.tls_verify is True
    session = await open_session(relay, delivery_settings)
    report = await session.send(SENDER, ["b@x.test"], make_message())
    await session.close()

    assert session.is_tls and session.info.tls_version is not None
    assert report.failure is None and len(server.messages) == 1
    assert server.commands[:3] == ["EHLO", "STARTTLS", "EHLO"]
    assert server.connections[0].tls is True
    assert "TLS established" in report.transcript


async def test_implicit_tls(smtp_server: ServerFactory, make_relay: RelayFactory,
                            delivery_settings: DeliverySettings) -> None:
    server = smtp_server(tls="implicit")
    report = await send_one(make_relay(server), delivery_settings, ["b@x.test"])

    assert report.failure is None and len(server.messages) == 1
    assert server.connections[0].tls is True


@pytest.mark.parametrize("cert, condition", [
    ("expired", Condition.TLS_CERT_EXPIRED),
    ("wrong_host", Condition.TLS_HOSTNAME_MISMATCH),
    ("unknown_ca", Condition.TLS_UNKNOWN_CA),
    ("self_signed", Condition.TLS_SELF_SIGNED),
])
@pytest.mark.parametrize("tls, stage", [("starttls", Stage.STARTTLS), ("implicit", Stage.CONNECT)])
async def test_bad_certificates_are_named(smtp_server: ServerFactory, make_relay: RelayFactory,
                                          delivery_settings: DeliverySettings, cert: str,
                                          condition: Condition, tls: str, stage: Stage) -> None:
    server = smtp_server(tls=tls, cert=cert)
    error = await open_failure(make_relay(server), delivery_settings)

    assert (error.failure.stage, error.failure.condition) == (stage, condition)
    assert "MAIL" not in server.commands


async def test_tls_verify_false_accepts_an_expired_certificate(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(tls="starttls", cert="expired")
    report = await send_one(make_relay(server, tls_verify=False, ca_file=""), delivery_settings,
                            ["b@x.test"])

    assert report.failure is None and len(server.messages) == 1


async def test_starttls_required_but_not_offered(smtp_server: ServerFactory,
                                                 make_relay: RelayFactory,
                                                 delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    error = await open_failure(make_relay(server, security="starttls"), delivery_settings)

    assert (error.failure.stage, error.failure.condition) == (Stage.STARTTLS,
                                                              Condition.STARTTLS_NOT_OFFERED)
    assert server.commands == ["EHLO"]  # never fell back to plaintext


async def test_starttls_refused_is_a_starttls_reply(smtp_server: ServerFactory,
                                                   make_relay: RelayFactory,
                                                   delivery_settings: DeliverySettings) -> None:
    server = smtp_server(tls="starttls", script=[reply("STARTTLS", "454 4.7.0 TLS not available")])
    error = await open_failure(make_relay(server), delivery_settings)

    assert error.failure.stage is Stage.STARTTLS
    assert error.failure.reply is not None
    assert (error.failure.reply.code, error.failure.reply.enhanced) == (454, "4.7.0")
    assert "MAIL" not in server.commands


async def test_implicit_tls_against_a_plaintext_port(smtp_server: ServerFactory,
                                                     make_relay: RelayFactory,
                                                     delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    error = await open_failure(make_relay(server, security="tls"), delivery_settings)

    assert error.failure.stage is Stage.CONNECT
    assert error.failure.condition is Condition.TLS_HANDSHAKE_FAILED
    assert "STARTTLS" in error.failure.detail


# --- AUTH ---------------------------------------------------------------------------------

def _secret_forms(username: str, password: str) -> list[str]:
    return [password, base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{username}\0{password}".encode()).decode()]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_succeeds_and_the_password_never_shows(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings, mechanism: str) -> None:
    server = smtp_server(auth=("user@x.test", PASSWORD), auth_mechanisms=[mechanism])
    relay = make_relay(server, username="user@x.test", password=PASSWORD)
    session = await open_session(relay, delivery_settings)
    report = await session.send(SENDER, ["b@x.test"], make_message())
    await session.close()

    assert session.info.auth_mechanism == mechanism
    assert server.connections[0].authenticated_as == "user@x.test"
    assert report.failure is None and len(server.messages) == 1
    assert f"AUTH {mechanism}" in report.transcript
    for form in _secret_forms("user@x.test", PASSWORD):
        assert form not in report.transcript
    if mechanism == "LOGIN":
        assert "S: 334 ***" in report.transcript and "C: ***" in report.transcript


async def test_plain_is_preferred_when_both_are_offered(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(auth=("user", PASSWORD))
    session = await open_session(make_relay(server, username="user", password=PASSWORD),
                                 delivery_settings)
    await session.close()

    assert session.info.auth_mechanism == "PLAIN"
    assert "C: AUTH PLAIN ***" in session.transcript.render()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_wrong_password_is_an_auth_reply(smtp_server: ServerFactory,
                                               make_relay: RelayFactory,
                                               delivery_settings: DeliverySettings,
                                               mechanism: str) -> None:
    server = smtp_server(auth=("user", "right-password"), auth_mechanisms=[mechanism])
    relay = make_relay(server, username="user", password=PASSWORD)
    error = await open_failure(relay, delivery_settings)

    assert error.failure.stage is Stage.AUTH
    assert error.failure.reply is not None
    assert (error.failure.reply.code, error.failure.reply.enhanced) == (535, "5.7.8")
    for form in _secret_forms("user", PASSWORD):
        assert form not in error.transcript
    assert "MAIL" not in server.commands


async def test_auth_not_offered(smtp_server: ServerFactory, make_relay: RelayFactory,
                                delivery_settings: DeliverySettings) -> None:
    server = smtp_server()  # no AUTH in EHLO
    error = await open_failure(make_relay(server, username="user", password=PASSWORD),
                               delivery_settings)

    assert (error.failure.stage, error.failure.condition) == (Stage.AUTH,
                                                              Condition.AUTH_NOT_OFFERED)
    assert "AUTH" not in server.commands


@pytest.mark.parametrize("allow_insecure_auth", [False, True])
async def test_auth_needs_tls_to_a_non_loopback_relay(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings, allow_insecure_auth: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may only talk to loopback, so the server stays on 127.0.0.1 and the
    # session is told the relay is remote (`is_loopback` itself is tested below).
    monkeypatch.setattr(smtp_session, "is_loopback", lambda host: False)
    server = smtp_server(auth=("user", PASSWORD))
    relay = make_relay(server, username="user", password=PASSWORD,
                       allow_insecure_auth=allow_insecure_auth)

    if allow_insecure_auth:
        session = await open_session(relay, delivery_settings)
        await session.close()
        assert session.info.auth_mechanism == "PLAIN"
        return
    error = await open_failure(relay, delivery_settings)
    assert (error.failure.stage, error.failure.condition) == (Stage.AUTH,
                                                              Condition.AUTH_NEEDS_TLS)
    assert "AUTH" not in server.commands


async def test_auth_over_starttls(smtp_server: ServerFactory, make_relay: RelayFactory,
                                  delivery_settings: DeliverySettings) -> None:
    server = smtp_server(tls="starttls", auth=("user", PASSWORD), auth_require_tls=True)
    report = await send_one(make_relay(server, username="user", password=PASSWORD),
                            delivery_settings, ["b@x.test"])

    assert report.failure is None
    assert server.commands[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST.", True), ("192.0.2.1", False),
    ("smtp.example.com", False), ("localhost.example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- message checks -----------------------------------------------------------------------

async def test_size_exceeded_sends_no_command(smtp_server: ServerFactory,
                                              make_relay: RelayFactory,
                                              delivery_settings: DeliverySettings) -> None:
    server = smtp_server(size_limit=2_000)
    session = await open_session(make_relay(server), delivery_settings)
    too_big = await session.send(SENDER, ["b@x.test"], big_message(5_000))
    fits = await session.send(SENDER, ["b@x.test"], make_message())
    await session.close()

    assert session.info.size_limit == 2_000
    assert too_big.failure is not None
    assert (too_big.failure.stage, too_big.failure.condition) == (Stage.SIZE_CHECK,
                                                                  Condition.MESSAGE_TOO_BIG)
    assert too_big.mail_reply is None and too_big.data_sent is False
    assert fits.failure is None  # the session was not spoiled by the check
    assert server.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


async def test_non_ascii_address_needs_smtputf8(smtp_server: ServerFactory,
                                                make_relay: RelayFactory,
                                                delivery_settings: DeliverySettings) -> None:
    server = smtp_server(smtputf8=False)
    report = await send_one(make_relay(server), delivery_settings, ["jörg@x.test"])

    assert report.failure is not None
    assert report.failure.condition is Condition.SMTPUTF8_REQUIRED
    assert "MAIL" not in server.commands


async def test_non_ascii_address_with_smtputf8(smtp_server: ServerFactory,
                                               make_relay: RelayFactory,
                                               delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    report = await send_one(make_relay(server), delivery_settings, ["jörg@x.test"])

    assert report.failure is None
    assert [m.rcpt_tos for m in server.messages] == [("jörg@x.test",)]


# --- transcript and probe -----------------------------------------------------------------

async def test_transcript_has_setup_lines_and_no_body(smtp_server: ServerFactory,
                                                      make_relay: RelayFactory,
                                                      delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    session: SmtpSession = await open_session(make_relay(server), delivery_settings)
    message = make_message(body=b"the secret body text\r\n")
    first = await session.send(SENDER, ["b@x.test"], message)
    assert await session.reset()
    second = await session.send(SENDER, ["b@x.test"], message)
    await session.close()

    for transcript in (first.transcript, second.transcript):
        assert "S: 220 smtp.test" in transcript.splitlines()[0]
        assert "C: EHLO client.test" in transcript
        assert f"C: <{len(message)} bytes of message data>" in transcript
        assert "secret body" not in transcript
    assert "C: RSET" not in first.transcript
    assert second.transcript.count("C: MAIL FROM") == 1
    if server.handler.pipelining:  # the reply to "." ended the transaction: no RSET
        assert "C: RSET" not in second.transcript
    else:
        assert second.transcript.index("C: RSET") < second.transcript.index("C: MAIL FROM")


async def test_probe_reports_without_sending(smtp_server: ServerFactory,
                                             make_relay: RelayFactory,
                                             delivery_settings: DeliverySettings) -> None:
    server = smtp_server(tls="starttls", auth=("user", PASSWORD), size_limit=10_000_000)
    result = await probe(make_relay(server, username="user", password=PASSWORD),
                         delivery_settings)

    assert result.ok
    assert result.info.size_limit == 10_000_000
    assert result.info.auth_mechanism == "PLAIN"
    assert result.info.tls_version is not None
    assert server.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]
    assert PASSWORD not in result.transcript


async def test_probe_reports_a_failure(delivery_settings: DeliverySettings) -> None:
    relay = RelaySettings(name="closed", host="127.0.0.1", port=closed_port(), security="none")
    result = await probe(relay, delivery_settings)

    assert not result.ok
    assert result.failure is not None
    assert result.failure.condition is Condition.CONNECTION_REFUSED


# --- the error mapper, for failures a loopback server cannot produce --------------------

def _wrapped(cause: BaseException) -> aiosmtplib.SMTPConnectError:
    error = aiosmtplib.SMTPConnectError("Error connecting to relay")
    error.__cause__ = cause
    return error


def _cert_error(code: int) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code = code
    error.verify_message = "test"
    return error


@pytest.mark.parametrize("exc, stage, condition", [
    (_wrapped(socket.gaierror(-2, "Name or service not known")), Stage.CONNECT,
     Condition.DNS_FAILURE),
    (_wrapped(ConnectionRefusedError(111, "refused")), Stage.CONNECT,
     Condition.CONNECTION_REFUSED),
    (_wrapped(OSError(101, "Network is unreachable")), Stage.CONNECT,
     Condition.NETWORK_UNREACHABLE),
    (aiosmtplib.SMTPConnectTimeoutError("timed out"), Stage.CONNECT,
     Condition.CONNECTION_TIMEOUT),
    (aiosmtplib.SMTPReadTimeoutError("timed out"), Stage.RCPT, Condition.COMMAND_TIMEOUT),
    (aiosmtplib.SMTPServerDisconnected("lost"), Stage.DATA, Condition.CONNECTION_DROPPED),
    (ConnectionResetError(104, "reset"), Stage.DATA, Condition.CONNECTION_DROPPED),
    (_wrapped(_cert_error(10)), Stage.CONNECT, Condition.TLS_CERT_EXPIRED),
    (_cert_error(62), Stage.STARTTLS, Condition.TLS_HOSTNAME_MISMATCH),
    (_cert_error(19), Stage.STARTTLS, Condition.TLS_SELF_SIGNED),
    (_cert_error(21), Stage.STARTTLS, Condition.TLS_UNKNOWN_CA),
    (_cert_error(23), Stage.STARTTLS, Condition.TLS_HANDSHAKE_FAILED),
    (aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response line"), Stage.EHLO,
     Condition.PROTOCOL_ERROR),
])
def test_failure_for_maps_foreign_errors(exc: BaseException, stage: Stage,
                                         condition: Condition) -> None:
    failure = failure_for(exc, stage)
    assert (failure.stage, failure.condition, failure.reply) == (stage, condition, None)


def test_failure_for_keeps_a_reply() -> None:
    failure = failure_for(aiosmtplib.SMTPResponseException(454, "4.7.0 TLS not available"),
                          Stage.STARTTLS)
    assert failure.reply is not None
    assert (failure.stage, failure.reply.code, failure.reply.enhanced) == (
        Stage.STARTTLS, 454, "4.7.0")
