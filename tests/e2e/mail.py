"""A message with an attachment, a Cc and a Bcc, queued through the service while no
worker runs (for the export, check and backup tests)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

ATTACHMENT = b"%PDF-1.4 quarterly figures " * 40


def submit_with_attachment_and_bcc(config: dict[str, Any]) -> tuple[str, str]:
    """(id, Message-ID) of one message with an attachment, a Cc and a Bcc."""
    from outbox.config import Settings
    from outbox.core.attachments import AttachmentIn
    from outbox.core.compose import Submission
    from outbox.service import Outbox

    async def submit() -> tuple[str, str]:
        outbox = await Outbox.open(Settings(**{k: v for k, v in config.items()
                                               if k != "logging"}))
        try:
            done = await outbox.messages.submit(Submission(
                sender="reports@example.test", to="boss@example.test", cc="cc@example.test",
                bcc="audit@example.test", subject="figures", text="attached",
                metadata={"ticket": "T-1"},
                attachments=[AttachmentIn("q.pdf", base64.b64encode(ATTACHMENT).decode(),
                                          "application/pdf")]), owner="app")
        finally:
            await outbox.close()
        return done.message.id, done.message.message_id

    return asyncio.run(submit())
