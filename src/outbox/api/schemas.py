"""Request and response bodies of the HTTP API, with the OpenAPI descriptions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from outbox.core.compose import AttachmentIn, Submission


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttachmentModel(Strict):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=255)
    content_base64: str | None = Field(None, description="the file, for small files")
    upload_id: str | None = Field(None, max_length=100, description="from POST /v1/uploads, "
                                  "for large files")
    content_id: str | None = Field(None, max_length=200, description="makes it an inline "
                                   "image of the html body, shown by <img src=\"cid:...\">")

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentModel:
        if (self.content_base64 is None) == (self.upload_id is None):
            raise ValueError("give exactly one of content_base64 or upload_id")
        return self


class MessageIn(Strict):
    sender: str = Field(alias="from", description="the From address, e.g. 'Shop <shop@x.org>'")
    to: list[str] | str = Field(default_factory=list, description="addresses: a list, or one "
                                "string separated by commas or semicolons")
    cc: list[str] | str = Field(default_factory=list)
    bcc: list[str] | str = Field(default_factory=list, description="never shown in headers")
    reply_to: list[str] | str = Field(default_factory=list)
    subject: str = Field("", max_length=998)
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers; "
                                    "Message-ID may be given to set it")
    attachments: list[AttachmentModel] = Field(default_factory=list)
    relay: str | None = Field(None, description="force a relay by name; default: routing rules")
    metadata: dict[str, Any] = Field(default_factory=dict, description="kept with the message")

    def to_submission(self) -> Submission:
        return Submission(
            sender=self.sender, to=self.to, cc=self.cc, bcc=self.bcc, reply_to=self.reply_to,
            subject=self.subject, text=self.text, html=self.html, headers=dict(self.headers),
            attachments=tuple(AttachmentIn(a.filename, a.content_base64 or "", a.content_type,
                                           a.upload_id, a.content_id)
                              for a in self.attachments),
            relay=self.relay, metadata=dict(self.metadata))


class ResendIn(Strict):
    confirm: bool = Field(False, description="required when the message already reached "
                          "a recipient")


class Accepted(BaseModel):
    id: str
    status: str
    message_id: str


class GuidanceOut(BaseModel):
    key: str
    kind: str
    title: str
    explanation: str
    next_step: str
    retryable: bool


class RecipientOut(BaseModel):
    address: str
    kind: str
    relay: str
    status: str
    reply_code: int | None
    enhanced_code: str | None
    reply: str | None
    guidance: str | None = Field(description="what happened and the next step, in plain words")
    guidance_detail: GuidanceOut | None = None
    provenance: str = Field("typed", description="how the address was resolved: typed, "
                            "alias:NAME, contact:NAME, or a chain like group:All > group:Ops")


class EventOut(BaseModel):
    at: str
    type: str
    attempt: int | None
    recipient: str | None
    reply_code: int | None
    enhanced_code: str | None
    reply: str | None
    guidance: str | None
    detail: str


class MessageOut(BaseModel):
    id: str
    status: str
    message_id: str
    attempts: int
    created_at: str
    updated_at: str
    next_attempt_at: str | None
    hold_reason: str
    resent_from: str | None = None
    sender: str
    subject: str
    metadata: dict[str, Any]
    recipients: list[RecipientOut]
    events: list[EventOut] = Field(default_factory=list)


class MessageList(BaseModel):
    messages: list[MessageOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    attempt: int
    started_at: str
    finished_at: str | None
    relay: str
    outcome: str
    transcript: str


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class UploadOut(BaseModel):
    upload_id: str
    size: int
    sha256: str
    expires_at: str
