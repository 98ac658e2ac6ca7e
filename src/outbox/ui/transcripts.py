"""An attempt's transcript as the message page shows it: the connection's set-up, then
this message's own lines with their times counted from this message's first line.

`delivery.transcript` writes a line per event, `+12.345s C: text`, timed from the start
of the SMTP session, with the session's set-up (greeting, EHLO, STARTTLS, AUTH) in front
of every message sent over it. On a session that had already delivered other messages,
this message's lines came long after the set-up, so their raw times (+12.3 s on its
first line) described the session, not this message (found by a stranger pass)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"\+(\d+(?:\.\d+)?)s (.*)", re.DOTALL)
# How a message's part of a session opens: an RSET on a reused session, the pipelined
# group's note, or MAIL (session.py, `reset` and `_pipelined`).
_OPENERS = ("C: RSET", "C: MAIL ", "*: PIPELINING")


@dataclass(frozen=True, slots=True)
class TranscriptView:
    setup: str  # the session's lines before this message's, times from its start
    own: str  # this message's lines, times from its first line; "" when there are none
    into_session: float | None  # seconds into the session at which `own` starts


def split_transcript(transcript: str) -> TranscriptView:
    lines = transcript.split("\n")
    timed = [_LINE.fullmatch(line) for line in lines]
    start = next((i for i, m in enumerate(timed) if m and m.group(2).startswith(_OPENERS)),
                 None)
    if start is None:
        return TranscriptView(transcript, "", None)
    opened_at = float(timed[start].group(1))  # type: ignore[union-attr]
    own = [_rebased(line, match, opened_at)
           for line, match in zip(lines[start:], timed[start:], strict=True)]
    return TranscriptView("\n".join(lines[:start]), "\n".join(own), opened_at)


def _rebased(line: str, match: re.Match[str] | None, origin: float) -> str:
    if match is None:  # not a timed line: shown as it is
        return line
    return f"+{max(float(match.group(1)) - origin, 0.0):.3f}s {match.group(2)}"
