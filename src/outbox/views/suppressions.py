"""The suppression list's JSON (`GET /v1/suppressions`, `outbox suppress ls --json`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from outbox.core.suppression import Suppression
from outbox.views.render import iso


class SuppressionOut(BaseModel):
    address: str
    reason: str = Field(description="hard_bounce | complaint | unsubscribe | manual")
    detail: str = Field(description="the bounce's status and words, or the operator's note")
    source_message: str | None = Field(description="the message whose bounce or report "
                                       "added it")
    created_at: str
    expires_at: str | None


def suppression_view(entry: Suppression) -> SuppressionOut:
    return SuppressionOut(address=entry.address, reason=entry.reason.value,
                          detail=entry.detail, source_message=entry.source_message,
                          created_at=iso(entry.created_at) or "",
                          expires_at=iso(entry.expires_at))
