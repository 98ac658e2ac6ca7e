"""`POST /v1/messages/raw`: a message the client built itself (RFC 5322 bytes, in
base64), and the envelope recipients that receive it.

For an application that already makes its MIME, or that signs or encrypts mail
(S/MIME, PGP/MIME), which Outbox must not rebuild. The bytes are read as SMTP
submission reads a message at its final dot (`core.inbound`): the From header is the
sender, Bcc and trace headers are dropped, the headers the message names need not be
the recipients (`rcpt_to` decides, as RCPT TO does), signed or encrypted mail goes out
as it came, and everything else is rebuilt and checked as any message is. An
Idempotency-Key compares the whole request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import Request
from pydantic import Field

from outbox.api.ratelimit import admit_messages
from outbox.api.schemas import Recipient, Strict
from outbox.core.attachments import base64_field
from outbox.core.inbound import Envelope, read_message, with_crlf
from outbox.service import Outbox, request_hash
from outbox.service.keys import Principal
from outbox.views.models import Accepted
from outbox.views.render import accepted_view


class RawMessageIn(Strict):
    rcpt_to: list[Recipient] = Field(default_factory=list, description="the envelope "
                                     "recipients: exactly these receive the message, as "
                                     "with SMTP's RCPT TO, whatever its To and Cc headers "
                                     "say; empty or left out: the addresses of its To, Cc "
                                     "and Bcc headers (as sendmail -t; the Bcc header is "
                                     "not sent)")
    data: str = Field(min_length=1, json_schema_extra={"format": "byte"},
                      description="the message, headers and body (RFC 5322, CRLF or LF line "
                      "ends), in base64; its From header is the sender")
    relay: str | None = Field(None, description="force a relay by name; default: routing "
                              "rules")
    metadata: dict[str, Any] = Field(default_factory=dict, description="kept with the message")


async def queue_raw(request: Request, principal: Principal, body: RawMessageIn,
                    idempotency_key: str | None) -> tuple[Accepted, bool]:
    """The work of `POST /v1/messages/raw`: the answer, and whether it is a replay."""
    outbox: Outbox = request.app.state.outbox
    await admit_messages(request, principal)  # over the key's limit: 429, nothing queued
    submission = read_message(_decoded(body.data), Envelope("", tuple(body.rcpt_to)))
    submission = replace(submission, relay=body.relay, metadata=dict(body.metadata),
                         envelope_field="rcpt_to")
    body_hash = None if idempotency_key is None else request_hash(
        body.model_dump(mode="json", exclude_unset=True))
    accepted = await outbox.messages.submit(submission, owner=principal.name,
                                            idempotency_key=idempotency_key,
                                            body_hash=body_hash)
    return accepted_view(accepted.message), accepted.replayed


def _decoded(data: str) -> bytes:
    return with_crlf(base64_field(data, "data", "data must be the message in base64"))
