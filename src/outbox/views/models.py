"""The view bodies shared by the entry points, with their OpenAPI descriptions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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


class ClaimOut(BaseModel):
    owner: str = Field(description="the worker process holding the message (host:pid:token)")
    since: str
    lease_until: str
    owner_alive: bool | None = Field(description="false: that process is gone; null: "
                                     "cannot be told right now")
    note: str = Field(description="what happens next, in plain words")


class MessageOut(BaseModel):
    id: str
    status: str
    message_id: str
    attempts: int = Field(description="tries counted against [retry] max_attempts; a try "
                          "that held the message, or that a failure of the whole relay "
                          "stopped (its `attempt` event says so), is not counted, and the "
                          "next try has the same number")
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
    claim: ClaimOut | None = Field(None, description="who is delivering it, while `sending`")


class AttemptOut(BaseModel):
    attempt: int
    started_at: str
    finished_at: str | None
    relay: str
    outcome: str
    transcript: str
