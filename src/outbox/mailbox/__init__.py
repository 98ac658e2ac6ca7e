"""Mailboxes Outbox reads: the IMAP bounce mailbox (`mailbox.imap`)."""

from outbox.mailbox.imap import PROCESSED_KEYWORD, ImapMailbox

__all__ = ["PROCESSED_KEYWORD", "ImapMailbox"]
