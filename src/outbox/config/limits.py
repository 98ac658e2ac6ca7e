"""`[limits]`: what one message, one request and one key may ask of Outbox. Every
refusal names the key that raises its limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from outbox.config.sections import Duration, Secret, Section, Size


class LimitsSettings(Section):
    max_message_size: Size = Field(25_000_000, description="encoded size on the wire")
    max_attachment_size: Size = Field(20_000_000, description="one attachment, decoded")
    blocked_extensions: list[str] = Field(
        default_factory=lambda: [".exe", ".bat", ".js", ".scr", ".com", ".cmd", ".vbs", ".msi"],
        description="with extension_policy = \"block\": attachment extensions refused")
    extension_policy: Literal["block", "allow"] = Field(
        "block", description="block: refuse blocked_extensions; allow: refuse every file "
        "whose extension is not in allowed_extensions (content is checked in both modes)")
    allowed_extensions: list[str] = Field(default_factory=list, description="with "
                                          "extension_policy = \"allow\": the only extensions "
                                          "accepted, e.g. [\".pdf\", \".png\"]")
    link_threshold: Size = Field(0, description="attachments larger than this are sent as a "
                                 "signed download link served by Outbox (GET /d/...); 0: off")
    link_ttl: Duration = Field(timedelta(days=7), description="how long a download link works")
    link_secret: Secret = Field(SecretStr(""), description="HMAC key for download links; "
                                "empty: one is made and kept in the database")
    max_recipients: int = Field(1000, ge=1, description="To + Cc + Bcc of one message, after "
                                "groups and aliases are expanded; send larger lists with "
                                "POST /v1/messages/batch")
    max_headers: int = Field(100, ge=0, description="extra headers of one message")
    max_header_size: Size = Field(8_000, ge=100, description="one extra header, name and "
                                  "value")
    max_json_depth: int = Field(32, ge=4, le=1000, description="nesting of a JSON request "
                                "body (objects and lists)")
    max_request_size: Size = Field(1_000_000, ge=1000, description="a request body on every "
                                   "route but messages (max_message_size) and uploads "
                                   "(max_attachment_size)")
    max_uploads_in_flight: int = Field(4, ge=1, description="uploads one API key may stream "
                                       "at once; more get 429")
    json_spool_threshold: Size = Field(1_000_000, ge=0, description="a JSON body larger than "
                                       "this is spooled to a temporary file and its base64 "
                                       "attachments decoded to the blob store while it is "
                                       "read, so memory stays flat")

    @model_validator(mode="after")
    def _check_links(self) -> LimitsSettings:
        if self.link_ttl <= timedelta(0):
            raise ValueError("link_ttl must be more than 0s")
        if self.extension_policy == "allow" and not self.allowed_extensions:
            raise ValueError("extension_policy \"allow\" needs allowed_extensions")
        return self
