"""What the submission listener answers: every reply with its enhanced status code
(RFC 3463), and `OutboxError`s turned into replies (as `api/errors.py` turns them
into HTTP statuses). Pure.

A refusal that waiting cannot fix is a 5xx; one the client should retry (the
database failed, the operator must finish the configuration) is a 4xx, so the
client keeps the message and tries again.
"""

from __future__ import annotations

from outbox.errors import (
    AttachmentBlocked,
    CommitUncertain,
    InputError,
    InvalidAddress,
    MessageIdReused,
    MessageTooLarge,
    OutboxError,
    RateLimited,
)

SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
AUTH_FAILED = ("535 5.7.8 Authentication credentials invalid (user name: the API key's name; "
               "password: the key)")
SCOPE_MISSING = "535 5.7.8 This API key lacks the 'send' scope"
AUTH_UNAVAILABLE = "454 4.7.0 Temporary authentication failure; try again later"
NOT_QUEUED = "451 4.3.0 Message not queued: Outbox cannot store it right now; try again later"
MAX_REPLY = 500  # RFC 5321 4.5.3.1.5: a reply line is at most 512 octets


def queued(id: str, message_id: str, *, replayed: bool) -> str:
    """250 only once the message is committed: its queue id and Message-ID."""
    again = " (sent before: not queued again)" if replayed else ""
    return f"250 2.0.0 Ok: queued as {id} {message_id}{again}"


def too_many_recipients(limit: int) -> str:
    return (f"452 4.5.3 Too many recipients: at most {limit} per message "
            "(submission.max_recipients); send the others in another message")


def trusted_key_unusable(name: str) -> str:
    return _line(f"451 4.7.0 Mail from this network is submitted as the API key '{name}' "
                 "(submission.trusted_key), which is no active key with the 'send' scope; "
                 "fix that, or log in with AUTH")


def key_revoked(name: str) -> str:
    return _line(f"530 5.7.0 The API key '{name}' this session logged in with was revoked; "
                 "log in again with an active key")


def send_scope_lost(name: str) -> str:
    return _line(f"530 5.7.0 The API key '{name}' this session logged in with no longer has "
                 "the 'send' scope; log in again with a key that has it")


def too_many_connections(host: str) -> str:
    return f"421 4.7.0 {host} Too many connections; try again later"


def too_many_errors(host: str) -> str:
    return f"421 4.7.0 {host} Too many errors on this connection; closing it"


def shutting_down(host: str) -> str:
    return f"421 4.3.2 {host} Service shutting down; try again later"


def size_exceeded(limit: int) -> str:
    return (f"552 5.3.4 Message size exceeds the limit of {limit} bytes "
            "(limits.max_message_size)")


def sender_refused(exc: InputError) -> str:
    return _line(f"553 5.1.7 {exc.message}")


def recipient_refused(exc: InputError) -> str:
    if isinstance(exc, InvalidAddress):
        return _line(f"553 5.1.3 {exc.message}")
    return _refused(exc)


def non_ascii_local_part(address: str, *, sender: bool) -> str:
    """An address with UTF-8 before the @: no relay path of Outbox carries it, even in
    an SMTPUTF8 session (a UTF-8 domain is fine: it goes out as its A-label)."""
    code, role = ("553 5.1.7", "sender") if sender else ("553 5.1.3", "recipient")
    return _line(f"{code} The {role} address '{address}' cannot be relayed: Outbox does not "
                 "send addresses with non-ASCII characters before the @ (SMTPUTF8 "
                 "addresses are not supported); use an ASCII address for this mailbox "
                 "(a non-ASCII domain alone is fine)")


def message_id_reused(exc: MessageIdReused) -> str:
    # 5.6.0 (RFC 3463 X.6: the message's content): the Message-ID header is content,
    # and no detail code says "duplicate". 554, the transaction failed: a resend of
    # this content never succeeds, so the client must not retry it.
    return _line(f"554 5.6.0 {exc.message}; give the new message its own Message-ID "
                 "(or none: Outbox makes one)")


def data_refused(exc: OutboxError, *, resend_is_safe: bool = False) -> str:
    """The reply to the final dot for a message that was not queued, or that may have
    been (`CommitUncertain`: the database went while committing it); `resend_is_safe`:
    the message's Message-ID is deduplicated, so a resend cannot make a second copy."""
    if isinstance(exc, CommitUncertain):  # 4xx still: a 250 for mail not stored loses it
        again = ("sending it again is safe (its Message-ID is recognised)" if resend_is_safe
                 else "sending it again may make a second copy")
        return _line(f"451 4.3.0 Message may be queued: Outbox lost its database while "
                     f"storing it; {again}")
    if isinstance(exc, AttachmentBlocked):
        return _line(f"550 5.7.1 {exc.message}")
    if isinstance(exc, MessageTooLarge):
        return _line(f"552 5.3.4 {exc.message}")
    if isinstance(exc, MessageIdReused):
        return message_id_reused(exc)
    if isinstance(exc, InputError):
        return _refused(exc)
    if isinstance(exc, RateLimited):  # temporary: the client retries later
        return _line(f"451 4.7.1 {exc.message}")
    return NOT_QUEUED


def _refused(exc: InputError) -> str:
    if exc.field == "relay":  # no relay can carry it: the operator's to fix, not the sender's
        return _line(f"451 4.3.5 {exc.message}")
    return _line(f"550 5.6.0 {exc.message}")


def _line(text: str) -> str:
    """One ASCII reply line: user text may hold anything (file names, headers)."""
    flat = " ".join(text.split())
    ascii_only = flat.encode("ascii", "backslashreplace").decode("ascii")
    return ascii_only if len(ascii_only) <= MAX_REPLY else ascii_only[:MAX_REPLY - 3] + "..."
