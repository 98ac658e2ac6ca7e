"""Raw UTF-8 in the headers of a message submitted over SMTP (RFC 6532), found by a
stranger: `From: Jürgen <...>` was read byte by byte and refused as a control
character. A real `outbox serve` per backend, smtplib as the client, the relay a
real aiosmtpd sink."""

from __future__ import annotations

import email
import email.policy
import secrets
from collections.abc import Iterator
from email.headerregistry import AddressHeader

import pytest

from tests.submission import Served, queued, serve_submission


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_submission(request.param, tmp_path_factory.mktemp("utf8")) as served:
        yield served


def utf8_message(headers: str, message_id: str) -> bytes:
    return (f"{headers}Subject: Grüße\r\nMessage-ID: {message_id}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            "\r\nSchöne Grüße\r\n").encode()


def submit(served: Served, raw: bytes, recipients: list[str],
           options: list[str]) -> tuple[int, str]:
    with served.smtp() as client:
        client.command_encoding = "utf-8"  # smtplib's is ASCII unless it sends SMTPUTF8
        assert client.mail("app@example.test", options)[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        code, reply = client.data(raw)
    return code, reply.decode()


def delivered(served: Served, reply: str, message_id: str) -> email.message.EmailMessage:
    assert served.final(queued(reply)[0])["status"] == "sent"
    (received,) = [m for m in served.sink.messages if m.message_id == message_id]
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii(), head  # re-encoded for the relay, as an API-submitted name is
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def names(parsed: email.message.EmailMessage, header: str) -> list[tuple[str, str]]:
    value = parsed[header]
    assert isinstance(value, AddressHeader)
    return [(a.display_name, a.addr_spec) for a in value.addresses]


@pytest.mark.parametrize("options", [["SMTPUTF8"], ["BODY=8BITMIME"]],
                         ids=["smtputf8", "8bitmime"])
def test_raw_utf8_display_names_are_delivered_intact(served: Served,
                                                     options: list[str]) -> None:
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    raw = utf8_message("From: Jürgen <app@example.test>\r\nTo: Ann Ölund "
                       "<ann@example.test>\r\nCc: Zoë <zoe@example.test>\r\n", message_id)
    code, reply = submit(served, raw, ["ann@example.test", "zoe@example.test"], options)
    assert code == 250, reply
    parsed = delivered(served, reply, message_id)
    assert names(parsed, "From") == [("Jürgen", "app@example.test")]
    assert names(parsed, "To") == [("Ann Ölund", "ann@example.test")]
    assert names(parsed, "Cc") == [("Zoë", "zoe@example.test")]
    assert str(parsed["Subject"]) == "Grüße"


def test_a_utf8_domain_goes_to_the_relay_as_its_a_label(served: Served) -> None:
    """As the API sends `user@bücher.example`: xn-- in the envelope; the To header
    names the recipient, so it is a To recipient, not a Bcc one."""
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    raw = utf8_message("From: Jürgen <app@example.test>\r\nTo: Büro "
                       "<user@bücher.example>\r\n", message_id)
    code, reply = submit(served, raw, ["user@bücher.example"], ["SMTPUTF8"])
    assert code == 250, reply
    parsed = delivered(served, reply, message_id)
    (received,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert received.rcpt_tos == ("user@xn--bcher-kva.example",)
    assert names(parsed, "To") == [("Büro", "user@xn--bcher-kva.example")]
    with served.outbox.client() as api:
        detail = api.get(f"/v1/messages/{queued(reply)[0]}").json()
    assert [r["kind"] for r in detail["recipients"]] == ["to"]


def test_a_header_that_is_not_utf8_is_refused_naming_it(served: Served) -> None:
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    raw = (b"From: J\xfcrgen <app@example.test>\r\nTo: ann@example.test\r\n"
           b"Subject: latin-1\r\nMessage-ID: " + message_id.encode() + b"\r\n\r\nHallo\r\n")
    code, reply = submit(served, raw, ["ann@example.test"], ["BODY=8BITMIME"])
    assert (code, reply) == (550, "5.6.0 header From is not valid UTF-8: write non-ASCII "
                                  "header text in UTF-8 (RFC 6532) or as encoded words "
                                  "(RFC 2047)")
    assert message_id not in served.message_ids()


def test_a_non_ascii_local_part_is_refused_saying_what_to_do(
        served: Served) -> None:
    with served.smtp() as client:
        client.command_encoding = "utf-8"
        assert client.mail("app@example.test", ["SMTPUTF8"])[0] == 250
        code, reply = client.rcpt("jürgen@example.test")
        assert code == 553
        assert reply.decode() == (
            "5.1.3 The recipient address 'j\\xfcrgen@example.test' cannot be relayed: "
            "Outbox does not send addresses with non-ASCII characters before the @ "
            "(SMTPUTF8 addresses are not supported); use an ASCII address for this "
            "mailbox (a non-ASCII domain alone is fine)")
        assert client.rcpt("user@bücher.example")[0] == 250  # the session goes on
        client.rset()
        code, reply = client.mail("jürgen@example.test", ["SMTPUTF8"])
        assert code == 553
        assert reply.decode().startswith(
            "5.1.7 The sender address 'j\\xfcrgen@example.test' cannot be relayed: ")
