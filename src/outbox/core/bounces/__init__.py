"""Bounces, read: delivery status notifications, non-standard bounces, feedback
reports and auto-replies (`parse_bounce`), and what they mean for the suppression
list (`core.suppression`). Pure: the stdlib email parser, no I/O."""

from outbox.core.bounces.parse import MAX_BOUNCE_SIZE, is_auto_reply, parse_bounce
from outbox.core.bounces.values import BouncedRecipient, BounceFormat, BounceKind, BounceReport

__all__ = ["MAX_BOUNCE_SIZE", "BounceFormat", "BounceKind", "BounceReport", "BouncedRecipient",
           "is_auto_reply", "parse_bounce"]
