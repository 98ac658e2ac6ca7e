"""The SMTP submission listener's rules as pure functions: when AUTH needs TLS, the
[submission] config checks, the replies and their enhanced codes, the SIZE a MAIL
declares, the Message-ID + envelope dedupe key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from outbox.config import Settings, SubmissionSettings, load_settings
from outbox.errors import (
    AttachmentBlocked,
    CommitUncertain,
    ConfigError,
    DatabaseUnavailable,
    HeaderInjection,
    InputError,
    InvalidAddress,
    MessageTooLarge,
    StorageError,
)
from outbox.submission import replies
from outbox.submission.handler import idempotency_key
from outbox.submission.server import (
    SubmissionSMTP,
    _plain_address,
    declared_size,
    tls_context,
)


@pytest.mark.parametrize(("bind", "security", "needs_tls"), [
    ("127.0.0.1:587", "starttls", False),        # loopback: nothing crosses a network
    ("127.0.0.2:587", "starttls", False),
    ("[::1]:587", "starttls", False),
    ("localhost:587", "starttls", False),
    ("0.0.0.0:587", "starttls", True),           # the wildcard reaches every interface
    ("[::]:587", "starttls", True),
    ("192.0.2.10:587", "starttls", True),
    ("mail.example.test:587", "starttls", True),  # a name: not trusted to be loopback
    ("0.0.0.0:465", "tls", False),               # TLS from the first byte
    ("127.0.0.1:2525", "none", False),
])
def test_auth_before_tls_only_on_a_loopback_bind(bind: str, security: str,
                                                 needs_tls: bool, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not read by the settings")
    settings = SubmissionSettings(bind=bind, security=security,  # type: ignore[arg-type]
                                  cert_file=str(cert) if security != "none" else "")
    assert settings.auth_needs_tls is needs_tls


@pytest.mark.parametrize(("section", "words"), [
    ('bind = "0.0.0.0:587"\nsecurity = "none"', 'submission: security "none" is only allowed '
     "on a loopback bind, not 0.0.0.0"),
    ('bind = "0.0.0.0:587"', 'submission: cert_file is required with security "starttls"'),
    ('bind = "0.0.0.0:465"\nsecurity = "tls"\ncert_file = "/nonexistent.pem"',
     "submission: cert_file '/nonexistent.pem' does not exist"),
    ('bind = "587"', "submission: bind '587' must be host:port, like 0.0.0.0:587"),
    ('bind = "127.0.0.1:2525"\nsecurity = "none"\nmax_recipients = 0',
     "submission.max_recipients: Input should be greater than or equal to 1"),
    ('bind = "127.0.0.1:2525"\nsecurity = "none"\ntrusted_networks = ["127.0.0.1"]',
     "submission: trusted_networks needs trusted_key: the name of the API key"),
    ('bind = "127.0.0.1:2525"\nsecurity = "none"\ntrusted_networks = ["localhost/8"]\n'
     'trusted_key = "app"', "submission: trusted_networks: 'localhost/8' is not a network; "
     "write it like 127.0.0.1/32"),
    ('bind = "127.0.0.1:2525"\nsecurity = "none"\ntrusted_networks = ["0.0.0.0/0"]\n'
     'trusted_key = "app"', "submission: trusted_networks: '0.0.0.0/0' is every address"),
    ('bind = "127.0.0.1:2525"\nsecurity = "none"\ntrusted_networks = ["::/0"]\n'
     'trusted_key = "app"', "submission: trusted_networks: '::/0' is every address"),
])
def test_bad_submission_config_is_one_line_naming_the_key(tmp_path: Path, section: str,
                                                          words: str) -> None:
    path = tmp_path / "outbox.toml"
    path.write_text(f"[submission]\n{section}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path))
    assert words in caught.value.message
    assert "\n" not in caught.value.one_line()


@pytest.mark.parametrize(("host", "trusted"), [
    ("127.0.0.1", True),
    ("127.0.0.2", False),
    ("10.1.200.7", True),            # in 10.1.0.0/16
    ("10.2.0.1", False),
    ("::ffff:10.1.0.9", True),       # an IPv4 client of a dual-stack socket
    ("::1", True),
    ("fe80::1%eth0", False),         # a zone id is not part of the address
    ("2001:db8::1", False),
    ("mail.example.test", False),    # never a name: peers are addresses
    ("", False),
])
def test_trusted_networks_hold_the_clients_they_name(host: str, trusted: bool) -> None:
    settings = SubmissionSettings(trusted_networks=["127.0.0.1", "10.1.0.0/16", "::1/128"],
                                  trusted_key="app")
    assert settings.is_trusted(host) is trusted


def test_defaults_no_listener_and_rfc_limits() -> None:
    settings = Settings().submission
    assert settings.bind == "" and settings.security == "starttls"
    assert settings.trusted_networks == [] and not settings.is_trusted("127.0.0.1")
    assert settings.command_timeout.total_seconds() == 300  # RFC 5321 4.5.3.2.7
    assert (settings.max_connections, settings.max_recipients, settings.max_errors) == (
        100, 1000, 20)


@pytest.mark.parametrize(("error", "reply"), [
    (AttachmentBlocked("'x.exe' is blocked: files ending in .exe are not allowed"),
     "550 5.7.1 'x.exe' is blocked: files ending in .exe are not allowed"),
    (MessageTooLarge("the message is 30,000,000 bytes"), "552 5.3.4 the message is 30,000,000 "
     "bytes"),
    (HeaderInjection("header 'X' contains a line break"), "550 5.6.0 header 'X' contains a "
     "line break"),
    (InvalidAddress("to[0]: 'x' is not an email address", field="to[0]"),
     "550 5.6.0 to[0]: 'x' is not an email address"),
    (InputError("no relay is configured", field="relay"), "451 4.3.5 no relay is configured"),
    (StorageError("database is locked"), replies.NOT_QUEUED),
])
def test_refusals_at_data(error: Exception, reply: str) -> None:
    assert replies.data_refused(error) == reply  # type: ignore[arg-type]


@pytest.mark.parametrize(("resend_is_safe", "words"), [
    (True, "sending it again is safe (its Message-ID is recognised)"),
    (False, "sending it again may make a second copy")])
def test_a_commit_whose_outcome_is_unknown_is_not_called_not_queued(
        resend_is_safe: bool, words: str) -> None:
    """The database went during the commit: the message may be stored. 4xx still (a 250
    for mail that was not stored loses it), but not "not queued", and whether a resend
    can make a second copy depends on the Message-ID being recognised."""
    reply = replies.data_refused(CommitUncertain(), resend_is_safe=resend_is_safe)
    assert reply == f"451 4.3.0 Message may be queued: Outbox lost its database while " \
                    f"storing it; {words}"
    assert replies.data_refused(DatabaseUnavailable()) == replies.NOT_QUEUED


def test_a_refusal_is_one_ascii_line_of_bounded_length() -> None:
    reply = replies.data_refused(AttachmentBlocked("'Résumé\r\n.exe' " + "x" * 900))
    assert reply.startswith("550 5.7.1 'R\\xe9sum\\xe9 .exe' ")
    assert reply.isascii() and "\n" not in reply and len(reply) <= replies.MAX_REPLY


def test_recipient_and_sender_refusals() -> None:
    bad = InvalidAddress("'x' is not an email address (it has no @)")
    assert replies.recipient_refused(bad).startswith("553 5.1.3 ")
    assert replies.sender_refused(bad).startswith("553 5.1.7 ")
    assert replies.recipient_refused(InputError("no relay", field="relay")) == "451 4.3.5 no relay"
    assert replies.too_many_recipients(1000).startswith("452 4.5.3 ")


def test_the_250_names_the_queue_id_and_message_id() -> None:
    assert replies.queued("q1", "<m@x>", replayed=False) == "250 2.0.0 Ok: queued as q1 <m@x>"
    assert replies.queued("q1", "<m@x>", replayed=True).startswith(
        "250 2.0.0 Ok: queued as q1 <m@x> ")


@pytest.mark.parametrize(("arg", "size"), [
    ("FROM:<a@x.test> SIZE=1000", 1000), ("FROM:<a@x.test> BODY=8BITMIME size=25000001",
                                          25_000_001),
    ("FROM:<a@x.test>", None), ("FROM:<size=5@x.test>", None), (None, None)])
def test_declared_size(arg: str | None, size: int | None) -> None:
    assert declared_size(arg) == size


def test_dedupe_key_is_message_id_and_envelope() -> None:
    key = idempotency_key("<m@x>", ["a@x.test", "B@x.test"])
    assert key is not None and key.startswith("smtp:")
    assert idempotency_key("<m@x>", ["b@x.test", "a@x.test", "a@x.test"]) == key
    assert idempotency_key("<m@x>", ["a@x.test"]) != key      # another transaction
    assert idempotency_key("<n@x>", ["a@x.test", "b@x.test"]) != key
    assert idempotency_key(None, ["a@x.test"]) is None      # nothing to compare


def test_a_certificate_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    settings = SubmissionSettings(bind="0.0.0.0:587", cert_file=str(cert))
    with pytest.raises(ConfigError) as caught:
        tls_context(settings)
    assert caught.value.message.startswith(f"submission.cert_file: cannot use {cert} as a "
                                           "certificate and its key: ")
    assert "\n" not in caught.value.message
    assert tls_context(SubmissionSettings(bind="127.0.0.1:2525", security="none")) is None


def _assert_read_as_aiosmtpd_does(arg: str, limit: int) -> None:
    connection = SimpleNamespace(local_part_limit=limit)
    try:
        expected = SMTP._getaddr(connection, arg)  # type: ignore[arg-type]
    except (IndexError, AttributeError):
        expected = (None, None)
    assert SubmissionSMTP._getaddr(connection, arg) == expected  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(arg=st.one_of(
    st.text(max_size=40),
    st.builds(lambda local, domain, rest: f"<{local}@{domain}>{rest}",
              st.text(max_size=70), st.text(max_size=20), st.text(max_size=15))),
    limit=st.sampled_from([0, 64]))
@example(arg="<", limit=0)
@example(arg=" <", limit=0)
@example(arg="0@[", limit=0)  # found by this test in CI: the stdlib's AttributeError
@example(arg="<0@[", limit=0)
def test_the_listener_reads_mail_and_rcpt_addresses_as_aiosmtpd_does(arg: str,
                                                                      limit: int) -> None:
    """SubmissionSMTP._getaddr is aiosmtpd's without its per-call class: same answers,
    except where aiosmtpd's raised (the stdlib's parser on a lone "<", or on an
    unclosed domain literal): there the address is refused as one that does not parse."""
    _assert_read_as_aiosmtpd_does(arg, limit)


# Near the common "<local@domain> PARAMS": plain words joined by dots, with at most one
# odd character (a quote, a comment's parenthesis, a blank, UTF-8, another dot, ...) put
# in anywhere; the short cut must give the parser's answer or leave it to the parser.
def _with_odd(words: list[str], odd: str, at: int) -> str:
    joined = ".".join(words)
    at = min(at, len(joined))
    return joined[:at] + odd + joined[at:]


_ODD = st.sampled_from(["", "", "", '"', "(", ")", " ", "\t", "\\", "é", ".", "@", "[", "]",
                        ",", ";", ":", "<", ">"])
_ATEXT_WORD = st.text(alphabet="ab9!#'*+/=?^_`{|}~-", min_size=1, max_size=4)
_LABEL = st.text(alphabet="ab9-", min_size=1, max_size=4)
_LOCAL = st.builds(_with_odd, st.lists(_ATEXT_WORD, min_size=1, max_size=3), _ODD,
                   st.integers(0, 12))
_DOMAIN = st.builds(_with_odd, st.lists(_LABEL, min_size=1, max_size=3), _ODD,
                    st.integers(0, 12))
_REST = st.text(alphabet=" \tS=1(x)<>", max_size=8)


@settings(max_examples=1000, deadline=None)
@given(arg=st.builds(lambda local, domain, rest: f"<{local}@{domain}>{rest}",
                     _LOCAL, _DOMAIN, _REST), limit=st.sampled_from([0, 4, 64]))
@example(arg="<a.b@c.d> SIZE=10", limit=0)
@example(arg="<a@b>  (c) SIZE=10", limit=0)
@example(arg="<a@b>\t(c)", limit=0)
@example(arg="<a@b>(c)x", limit=0)
@example(arg="<a@b> \tx", limit=0)
@example(arg="<abcde@b>", limit=4)
@example(arg='<a"b@c>', limit=0)  # the parser reads a quoted string from the quote on
@example(arg="<a@b..c>", limit=0)
def test_the_listeners_short_cut_reads_common_addresses_as_aiosmtpd_does(arg: str,
                                                                         limit: int) -> None:
    """`<local@domain>` with a plain local part and host name is read without the
    stdlib's parser (`server._plain_address`); its answers are the parser's."""
    _assert_read_as_aiosmtpd_does(arg, limit)


def test_the_short_cut_takes_the_common_arguments() -> None:
    """It is taken for what clients send (else the test above proves nothing of it),
    and left where the parser must read."""
    assert _plain_address("<sender@example.com>") == ("sender@example.com", "")
    assert _plain_address("<a.b+c@mail.example.com>  SIZE=1024 BODY=8BITMIME") == (
        "a.b+c@mail.example.com", "SIZE=1024 BODY=8BITMIME")
    for other in ('<"a b"@c>', "<a@[127.0.0.1]>", "<a@b> (comment)", "<é@b>", " <a@b>",
                  "<a..b@c>", "a@b", "<>"):
        assert _plain_address(other) is None, other
