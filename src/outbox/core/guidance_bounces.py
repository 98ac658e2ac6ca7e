"""The guidance entries of what comes back after the relay said 250: complaints,
unsubscribes and the suppression list (a bounce itself is guided by its DSN status,
through the reply entries of `guidance_catalogue`). Data only."""

from __future__ import annotations

from outbox.core.guidance_catalogue import Entry

_UNSUPPRESS = ("remove it from the suppression list (`outbox suppress rm ADDRESS`) only if "
               "the recipient asked for mail again.")

BOUNCE_CONDITIONS: dict[str, Entry] = {
    "bounce.complaint": Entry(
        "policy", "Recipient reported the message as spam",
        "The recipient's mailbox provider sent a feedback-loop report (ARF): the recipient "
        "marked this message as spam. Outbox added the address to the suppression list.",
        "Send this recipient nothing more; check how the address was collected and that "
        "the mail was wanted; " + _UNSUPPRESS, False),
    "bounce.unsubscribed": Entry(
        "policy", "Recipient unsubscribed",
        "The recipient used the message's one-click unsubscribe link (List-Unsubscribe). "
        "Outbox added the address to the suppression list.",
        "Nothing to do; " + _UNSUPPRESS, False),
    "suppressed": Entry(
        "recipient", "Recipient is suppressed",
        "This address is on the suppression list (an earlier hard bounce, a spam complaint, "
        "an unsubscribe, or an operator's entry), so Outbox refuses to send to it.",
        "Check the list entry's reason (`outbox suppress ls`); " + _UNSUPPRESS, False),
}
