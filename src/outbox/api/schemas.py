"""Request bodies and API-only responses (list page, errors, uploads) of the HTTP API,
with the OpenAPI descriptions. The message views the CLI shares are in `outbox.views`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Path
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from outbox.api.described import (
    ADDRESS,
    BODY_GIVEN,
    CONTENT_ID_PATTERN,
    CONTENT_TYPE,
    FILENAME_PATTERN,
    HEADERS,
    INLINE_NEEDS_HTML,
    ONE_LINE,
    ONE_SOURCE,
    RECIPIENT_GIVEN,
    RECIPIENTS,
    UPLOAD_ID_PATTERN,
)
from outbox.core.compose import AttachmentIn, Submission
from outbox.core.json_values import unstorable
from outbox.views.models import MessageOut

# A message's id in a path (32 hex digits for messages Outbox made; imports keep theirs).
MessageKey = Annotated[str, Path(min_length=1, max_length=200)]
UNKEEPABLE = "unkeepable_value"  # a pydantic error type: ctx `path` is where, inside the field
IDEMPOTENCY_KEY_LENGTH = range(1, 256)  # characters (api/direct.py checks it too)
IdempotencyKey = Annotated[str | None, Header(
    min_length=IDEMPOTENCY_KEY_LENGTH.start, max_length=IDEMPOTENCY_KEY_LENGTH.stop - 1,
    description="a repeated request with the same key and "
    "body answers 200 with the first result; another body: 422 idempotency_key_reused")]
# One address, or in a string field also a list separated by commas or semicolons; display
# names ("Name <a@example.com>") and groups are accepted where the format says email.
Address = Annotated[str, Field(json_schema_extra=ADDRESS)]
Recipient = Annotated[str, Field(json_schema_extra=RECIPIENTS)]


def _addresses(value: Any) -> Any:
    """Either form, or one message for both: the union's own said only "Input should be a
    valid list" for `"to": 5`, though a string is taken too."""
    if not isinstance(value, str | list):
        raise ValueError("give a list of addresses, or one string of them separated by "
                         "commas or semicolons")
    return value


Addresses = Annotated[list[Recipient] | Recipient, BeforeValidator(_addresses)]


def _json_integer(value: Any) -> Any:
    """JSON's integers (1 and 1.0), not true or "1": what the document's integer means."""
    if isinstance(value, bool | str):
        raise ValueError("Input should be a valid integer")
    return value


JSON_INTEGER = BeforeValidator(_json_integer)  # Annotated[int, Field(ge=...), JSON_INTEGER]


class Shape(BaseModel):
    """A request body's shape: no unknown fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Strict(Shape):
    """And no value Outbox could not keep (`core.json_values`): a lone surrogate, NaN,
    Infinity. Checked on each field once it is valid, so a value inside a nested
    model is checked by that model; api.errors adds the path within the field to the
    error's field (`metadata.note`)."""

    @field_validator("*")
    @classmethod
    def _keepable(cls, value: Any) -> Any:
        found = unstorable(value)
        if found is not None:
            path, why = found
            raise PydanticCustomError(UNKEEPABLE, why, {"path": path})
        return value


class AttachmentModel(Strict):
    model_config = ConfigDict(json_schema_extra=ONE_SOURCE)

    filename: str = Field(min_length=1, max_length=255, json_schema_extra={
        "pattern": FILENAME_PATTERN}, description="the name the recipient sees; no path, no "
        "line break; the extensions in [limits] blocked_extensions are refused")
    content_type: str = Field("application/octet-stream", max_length=255,
                              json_schema_extra=CONTENT_TYPE,
                              description="type/subtype, not multipart/*, with parameters "
                              "if any (text/calendar; method=REQUEST); name is set from "
                              "filename; empty: guessed. The first text/calendar with a "
                              "method goes as the body's last alternative, an invitation")
    content_base64: str | None = Field(None, json_schema_extra={"format": "byte"},
                                       description="the file, for small files")
    upload_id: str | None = Field(None, max_length=100, pattern=UPLOAD_ID_PATTERN,
                                  description="from POST /v1/uploads, for large files; one "
                                  "that expired or was never made: 404 upload_not_found")
    content_id: str | None = Field(None, max_length=200, json_schema_extra={
        "pattern": CONTENT_ID_PATTERN}, description="makes it an inline image of the html "
        "body, shown by <img src=\"cid:...\">; unique within the message")

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentModel:
        if (self.content_base64 is None) == (self.upload_id is None):
            raise ValueError("give exactly one of content_base64 or upload_id")
        return self


class MessageIn(Strict):
    # What one field's type cannot say: a recipient in to, cc or bcc; a body; an inline
    # image only with an html body.
    model_config = ConfigDict(json_schema_extra={
        "allOf": [RECIPIENT_GIVEN, BODY_GIVEN, INLINE_NEEDS_HTML]})

    sender: str = Field(alias="from", json_schema_extra=ADDRESS,
                        description="the From address, e.g. 'Shop <shop@x.org>'")
    to: Addresses = Field(default_factory=list, description="addresses: a list, or one "
                          "string separated by commas or semicolons")
    cc: Addresses = Field(default_factory=list)
    bcc: Addresses = Field(default_factory=list, description="never shown in headers")
    reply_to: Addresses = Field(default_factory=list)
    subject: str = Field("", max_length=998, json_schema_extra=ONE_LINE)
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, json_schema_extra=HEADERS,
                                    description="extra headers; Message-ID may be given to "
                                    "set it; those with their own field are refused")
    attachments: list[AttachmentModel] = Field(default_factory=list)
    relay: str | None = Field(None, description="force a relay by name; default: routing rules")
    metadata: dict[str, Any] = Field(default_factory=dict, description="kept with the message")
    list_unsubscribe: StrictBool = Field(False, description="add RFC 8058 one-click unsubscribe "
                                   "headers (List-Unsubscribe, List-Unsubscribe-Post); the "
                                   "message must have exactly one recipient")

    def to_submission(self) -> Submission:
        return Submission(
            sender=self.sender, to=self.to, cc=self.cc, bcc=self.bcc, reply_to=self.reply_to,
            subject=self.subject, text=self.text, html=self.html, headers=dict(self.headers),
            attachments=tuple(AttachmentIn(a.filename, a.content_base64 or "", a.content_type,
                                           a.upload_id, a.content_id)
                              for a in self.attachments),
            relay=self.relay, metadata=dict(self.metadata),
            list_unsubscribe=self.list_unsubscribe)


class ResendIn(Strict):
    confirm: StrictBool = Field(False, description="required when the message already reached "
                          "a recipient")


class RetryIn(Strict):
    confirm: StrictBool = Field(False, description="required when a try ended uncertain (the "
                          "relay probably has a copy already): a retry sends another")


class MessageList(BaseModel):
    messages: list[MessageOut]
    next_cursor: str | None


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
    received_as: Literal["raw", "multipart"] = Field(
        description="raw: the body was the file; multipart: the file was the form's file part")
    filename: str | None = Field(None, description="the form part's filename, if it had one")
    content_type: str | None = Field(None, description="the form part's Content-Type")
