"""Guidance for Outbox's own decisions and states (not SMTP replies, not session
conditions): data only, rendered by `core.guidance`."""

from __future__ import annotations

from outbox.core.guidance_catalogue import RELEASE, Entry

UNCERTAIN_DELIVERY = "uncertain_delivery"
LOGIN_REQUIRED = "login_required"  # a relay refused mail for want of a login; none is set
GAVE_UP_UNCERTAIN = "gave_up_uncertain"  # the retry limit ended a run of uncertain tries

_RETRY_FIX = "Look at the last attempt's guidance for the cause, fix it, then retry the message."

OUTBOX_CONDITIONS: dict[str, Entry] = {
    UNCERTAIN_DELIVERY: Entry(
        "network", "Delivery uncertain",
        "The connection ended after the whole message was sent but before the relay confirmed "
        "it, so the relay may or may not have accepted it.",
        "Nothing to do with on_uncertain \"retry\": Outbox resends with the same Message-ID; with "
        "\"hold\", search the relay's log for the Message-ID, then retry or cancel.", True),
    LOGIN_REQUIRED: Entry(
        "auth", "Relay requires a login",
        "The relay requires a login and none is configured: it took the connection without "
        "asking for one, then refused the mail. Its mail is held, not failed, and is not "
        "tried again on its own.",
        "Store the relay's account with `outbox relay set-credentials NAME` (that releases the "
        "held mail); if the relay should take mail without a login, fix it there, then "
        "`outbox queue retry ID`.", False),
    "worker_stopped": Entry(
        "outbox", "Delivery interrupted",
        "The Outbox process delivering this message stopped (it crashed, was killed or hung) "
        "before it recorded the relay's answer. A running worker put the message back in the "
        "queue and counted the attempt.",
        "Nothing to do: it is tried again at once. If processes keep dying, read their log and "
        "the system log (out of memory?).", True),
    "internal_error": Entry(
        "outbox", "Delivery failed inside Outbox",
        "Outbox itself failed while handling this message (not the relay), so the attempt was "
        "given up and counted; it is tried again with back-off until [retry] max_attempts.",
        "Send the event's detail and `outbox support-bundle` to the Outbox maintainers; retry "
        "or cancel the message meanwhile.", True),
    "relay_needs_attention": Entry(
        "relay", "Relay needs attention",
        "Outbox stopped sending through this relay after a problem retrying cannot fix, usually "
        "its credentials. Its mail is held, not failed.",
        "Fix the relay as its alert says (`outbox doctor` shows the problem), " + RELEASE, False),
    "oauth_token_rejected": Entry(
        "auth", "Relay refused the OAuth2 token",
        "The relay rejected a freshly issued OAuth2 access token: the grant lacks the mail "
        "scope, the username is not the token's mailbox, or SMTP login is disabled for it. "
        "The relay's mail is held, not failed.",
        "Re-authorize: run the provider's OAuth2 consent again (with the SMTP scope, as the "
        "relay's username), then store the new refresh token with `outbox relay "
        "set-credentials NAME`; that releases the held mail.", False),
    "held_by_policy": Entry(
        "outbox", "Held by policy",
        "Outbox is holding this message by its own policy (for example on_uncertain \"hold\") "
        "and will not send it on its own.",
        "Review the message, then release it with `outbox queue retry ID` or cancel it with "
        "`outbox queue cancel ID`.", False),
    "internal_route_violation": Entry(
        "outbox", "Internal recipient routed to an external relay",
        "This recipient is in an internal domain but its route leads to a relay not marked "
        "internal, so Outbox refused to send it there.",
        "Route this domain through a relay with internal = true, then retry the message.", False),
    "attachment_blocked": Entry(
        "message", "Attachment type blocked",
        "An attachment's extension or content is a blocked type ([limits] blocked_extensions), "
        "so Outbox will not send it.",
        "Remove the attachment or send it as a link; unblock the type only if it is safe.", False),
    "attachment_corrupt": Entry(
        "message", "Attachment damaged",
        "An attachment's stored content no longer matches the checksum taken at upload, so "
        "Outbox will not send a damaged file.",
        "Upload the file again and submit a new message; check the disk if this recurs.", False),
    "attachment_unreadable": Entry(
        "outbox", "Attachment could not be read",
        "Outbox could not read an attachment from its blob store (the disk or the database "
        "failed), so it stopped before sending anything.",
        "Check the blob store ([storage] blob_dir or the database) is reachable and not full; "
        "Outbox retries meanwhile.", True),
    "clock_skew": Entry(
        "outbox", "System clock is wrong",
        "This machine's clock is far from real time, which breaks OAuth2 tokens and TLS "
        "certificate checks.",
        "Turn on time synchronisation (NTP) on this machine, then retry the messages.", False),
    "relay_failure_rate": Entry(
        "relay", "Relay keeps failing",
        "Most recent attempts through this relay did not deliver (deferred, failed or held), more "
        "than [alerts] failure_ratio allows.",
        "Open a recent failed message (`outbox queue ls --status deferred`) and follow its "
        "guidance; `outbox doctor` checks the relay itself.", False),
    "queue_backlog": Entry(
        "outbox", "Mail is waiting too long",
        "The oldest queued or deferred message has waited longer than [alerts] "
        "oldest_queued_age, so mail is not leaving as fast as it arrives.",
        "Check that a worker is running and its relays answer (`outbox doctor`), then look at "
        "the oldest deferred message's guidance.", False),
    "webhook_disabled": Entry(
        "outbox", "Webhook endpoint disabled",
        "Every request to this endpoint failed for [webhooks] disable_after, so Outbox stopped "
        "sending it events; they are not delivered while it is disabled.",
        "Fix the receiver (`outbox webhooks log ID` shows its last answers), then `outbox "
        "webhooks enable ID`; its pending events resume, and `outbox webhooks redeliver "
        "EVENT_ID` sends any event again.", False),
    "messages_held": Entry(
        "outbox", "Messages are held",
        "Held mail is never sent or failed on its own; it waits for an operator.",
        "List it with `outbox queue ls --status held`, fix the cause its guidance names, then "
        "release it with `outbox queue retry ID` or cancel it.", False),
    "max_attempts_reached": Entry(
        "outbox", "Gave up after too many attempts",
        "Every attempt failed temporarily until the retry limit ([retry] max_attempts) was "
        "reached.", _RETRY_FIX, False),
    GAVE_UP_UNCERTAIN: Entry(
        "outbox", "Gave up; the relay probably has the message",
        "The connection ended after the whole message was sent, before the relay confirmed "
        "it, until the retry limit ([retry] max_attempts or max_age) was reached: the relay "
        "probably received the message, once for each `uncertain` event in its timeline.",
        "Search the relay's log for the message's Message-ID (`outbox status ID` shows it) "
        "before doing anything: retrying sends another copy. If the relay never got it, retry "
        "the message; ask the relay's administrator why it drops the connection after DATA.",
        False),
    "max_age_reached": Entry(
        "outbox", "Gave up: message too old",
        "The message kept failing temporarily for longer than [retry] max_age allows.",
        _RETRY_FIX, False),
    "cancelled": Entry(
        "outbox", "Cancelled",
        "An operator or application cancelled this message before it was delivered.",
        "Nothing to do; submit it again if it should still be sent.", False),
}
