"""Idempotency keys compare request bodies by digest: `request_hash` of the JSON as
the client sent it, or `submission_body` for a submission made in Outbox (CLI, UI)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from outbox.core.compose import Submission, attachment_fields


def request_hash(body: Any) -> str:
    """A stable digest of a request body, for idempotency-key comparisons."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submission_body(submission: Submission) -> dict[str, Any]:
    body = {name: getattr(submission, name) for name in submission.__slots__}
    body["attachments"] = [attachment_fields(a) for a in submission.attachments]
    if submission.envelope is None:  # hashes of submissions without it stay as they were
        del body["envelope"]
    if submission.envelope_field == "envelope":  # likewise
        del body["envelope_field"]
    if not submission.list_unsubscribe:  # likewise
        del body["list_unsubscribe"]
    return body
