"""The SMTP reply half of the guidance catalogue: data only.

`core.guidance` looks entries up, adds Outbox's non-reply conditions and
renders them. Keys by family:

- `smtp.<code>`: basic reply codes (RFC 5321, RFC 4954 for AUTH, RFC 7504);
- `smtp.<c>.<s>.<d>`: RFC 3463 enhanced codes with a specific meaning;
- `smtp.<c>.<s>.x`, `smtp.<c>.x.x`, `smtp.<c>xx`, `smtp.unknown`: fallbacks
  by enhanced subject, enhanced class, basic class, and for unreadable codes;
- `auth.rejected`: any permanent reply to AUTH without a more specific entry.

`retryable` follows the code class: 4xx yes; 2xx, 3xx and 5xx no.
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    kind: str
    title: str
    explanation: str
    next_step: str
    retryable: bool


KINDS = frozenset({"recipient", "mailbox", "message", "policy", "auth", "network", "tls",
                   "throttle", "relay", "outbox", "sent", "unknown"})

RETRY = "Outbox will retry automatically; nothing to do unless it keeps happening."
RETRY_ASK_ADMIN = ("Outbox will retry automatically; if it keeps happening, ask the relay's "
                   "administrator to check its logs for this time.")
RELEASE = "then release the held mail with `outbox queue retry ID`."
NEW_ADDRESS = "Ask the recipient for a correct address; this one cannot receive mail."
POSTMASTER = ("Read the server's reason; if the message is legitimate, send the transcript to the "
              "recipient's postmaster or the relay's provider.")
# A 421 or 4.7.x: the governor paces the relay, and its mail spends no attempts (SPEC F3).
SLOW_DOWN = ("Outbox will retry automatically and slows down for this relay; its mail waits "
             "without spending attempts, up to [retry] max_age. Nothing to do unless it keeps "
             "happening.")
# Not `outbox doctor`: this text is shown inside doctor too (a stranger pass).
DOCTOR = ("`outbox relay test NAME --transcript` shows what the relay offers (its EHLO "
          "answer); then fix the relay's settings.")

BASIC_CODES: dict[str, Entry] = {
    "smtp.421": Entry(
        "throttle", "Relay busy or closing the connection",
        "The server ended the session early, usually because it is overloaded, restarting or "
        "limiting how fast Outbox may send.",
        SLOW_DOWN, True),
    "smtp.432": Entry(
        "auth", "Password change required",
        "The mail provider wants the account's password changed before it accepts this login.",
        "Sign in to the account outside Outbox, change the password and update it on the relay; "
        "Outbox retries meanwhile.", True),
    "smtp.450": Entry(
        "mailbox", "Mailbox busy or unavailable",
        "The recipient's mailbox cannot take mail right now, for example because it is locked or "
        "the server is greylisting new senders.", RETRY, True),
    "smtp.451": Entry(
        "relay", "Temporary error at the server",
        "The server hit a local problem while handling the message and asked Outbox to try "
        "again later.", RETRY_ASK_ADMIN, True),
    "smtp.452": Entry(
        "relay", "Server out of storage or too many recipients",
        "The server is short of storage, or accepts only so many recipients per message and "
        "will take the rest later.", RETRY_ASK_ADMIN, True),
    "smtp.454": Entry(
        "auth", "Temporary login or TLS failure",
        "The server could not check Outbox's login or start TLS just now, often because one of "
        "its own back ends is down.", RETRY_ASK_ADMIN, True),
    "smtp.455": Entry(
        "relay", "Server cannot accept these parameters now",
        "The server cannot handle an option of MAIL FROM or RCPT TO at the moment.", RETRY, True),
    "smtp.500": Entry(
        "relay", "Command not recognised",
        "The server did not understand a command. Usually the host and port do not lead to an "
        "SMTP server, or a firewall or antivirus proxy is rewriting the conversation.",
        "Check the relay's host and port, and turn off SMTP inspection on any firewall or "
        "antivirus between Outbox and the relay.", False),
    "smtp.501": Entry(
        "relay", "Invalid command arguments",
        "The server refused the arguments of a command, most often an address it considers "
        "malformed.",
        "Find the address the server names in the transcript, correct it and send again.", False),
    "smtp.502": Entry(
        "relay", "Command not implemented",
        "The server does not support a command Outbox needs for this message.",
        "Point the relay at a full submission server (port 587 or 465); " + DOCTOR, False),
    "smtp.503": Entry(
        "relay", "Commands in the wrong order",
        "The server refused a command as out of sequence; relays often say this when they "
        "require a login before they accept mail.",
        "If the relay needs a login, set username and password (or oauth2) on it; otherwise send "
        "the transcript to the relay's administrator.", False),
    "smtp.504": Entry(
        "relay", "Command option not implemented",
        "The server does not support an option Outbox used, often the login method.",
        DOCTOR, False),
    "smtp.521": Entry(
        "recipient", "Server does not accept mail",
        "The recipient's server says it never accepts email.", NEW_ADDRESS, False),
    "smtp.530": Entry(
        "auth", "Login required",
        "The relay requires Outbox to log in, and sometimes to start TLS first, before it accepts "
        "mail. The relay's mail is held, not failed.",
        "Store the relay's account with `outbox relay set-credentials NAME` (that releases "
        "the held mail), or set username and password (or oauth2) on the relay in the config "
        "file, with security \"starttls\" or \"tls\", " + RELEASE, False),
    "smtp.534": Entry(
        "auth", "Login method too weak",
        "The provider refused this login method, typically because the account uses multi-factor "
        "authentication or basic passwords are turned off. The relay's mail is held.",
        "Create an app password for the account or switch the relay to oauth2, " + RELEASE, False),
    "smtp.535": Entry(
        "auth", "Username or password rejected",
        "The relay did not accept the credentials Outbox sent. The relay's mail is held, not "
        "failed.",
        "Check the relay's password by signing in outside Outbox; if the account uses MFA, create "
        "an app password, " + RELEASE, False),
    "smtp.538": Entry(
        "auth", "Encryption required for login",
        "The relay accepts this login method only over an encrypted connection.",
        "Set security \"starttls\" (port 587) or \"tls\" (port 465) on the relay, " + RELEASE,
        False),
    "smtp.550": Entry(
        "recipient", "Mailbox unavailable",
        "The server refused the recipient or the message for good. Most often the mailbox does "
        "not exist, but some servers also use 550 for policy or spam rejections.",
        "If the server says the address is unknown, ask the recipient for a correct one; if it "
        "names a policy, contact the recipient's postmaster.", False),
    "smtp.551": Entry(
        "recipient", "User not local",
        "The server does not handle mail for this recipient and will not forward it.",
        "Ask the recipient for their current address; the server's text may name it.", False),
    "smtp.552": Entry(
        "mailbox", "Storage limit exceeded",
        "The message is bigger than the server accepts, or the recipient's mailbox is out of "
        "space.",
        "Send large files as a link instead of an attachment; if the mailbox is full, ask the "
        "recipient to free space, then resend.", False),
    "smtp.553": Entry(
        "recipient", "Address not allowed",
        "The server rejected an address as invalid or not permitted: a recipient, or the sender.",
        "Check the addresses in the transcript for typos; if the sender is refused, send from an "
        "address the relay account may use.", False),
    "smtp.554": Entry(
        "policy", "Transaction failed",
        "The server refused the message for good, usually because a spam, virus or reputation "
        "filter rejected it.", POSTMASTER, False),
    "smtp.555": Entry(
        "relay", "MAIL or RCPT options not recognised",
        "The server does not support an option Outbox added to MAIL FROM or RCPT TO, such as "
        "SIZE or SMTPUTF8.", DOCTOR, False),
    "smtp.556": Entry(
        "recipient", "Domain does not accept mail",
        "The recipient's domain publishes that it accepts no email (a null MX).", NEW_ADDRESS,
        False),
}

ENHANCED_CODES: dict[str, Entry] = {
    "smtp.4.1.8": Entry(
        "message", "Sender domain not found for now",
        "The server could not confirm that the sender's domain exists.",
        "Outbox will retry; if it keeps happening, check the sender domain's DNS records.", True),
    "smtp.4.2.2": Entry(
        "mailbox", "Mailbox full for now",
        "The recipient's mailbox is over its quota; the server may accept the message once space "
        "is freed.", RETRY, True),
    "smtp.4.4.0": Entry(
        "network", "Temporary network or routing problem",
        "The server could not reach the next server on the way to the recipient.", RETRY, True),
    "smtp.4.4.1": Entry(
        "network", "No answer from the next server",
        "The relay could not get an answer from the recipient's server.", RETRY, True),
    "smtp.4.4.2": Entry(
        "network", "Connection to the next server broke",
        "The connection between servers was lost or timed out during delivery.", RETRY, True),
    "smtp.4.4.3": Entry(
        "network", "DNS lookup failed at the server",
        "The server could not look up where to deliver this domain's mail.", RETRY, True),
    "smtp.4.4.5": Entry(
        "throttle", "Server congested",
        "The receiving mail system is overloaded and asked Outbox to come back later.", RETRY,
        True),
    "smtp.4.5.3": Entry(
        "message", "Too many recipients in one message",
        "The server takes only so many recipients per message; it will accept the others in a "
        "later attempt.", RETRY, True),
    "smtp.4.7.0": Entry(
        "throttle", "Greylisted or rate-limited",
        "The server refused for now for a security or policy reason, most often greylisting of "
        "a new sender or a limit on how fast Outbox may send.",
        SLOW_DOWN, True),
    "smtp.4.7.1": Entry(
        "throttle", "Refused for now by policy",
        "The server temporarily refused the sender or recipient, often as greylisting that "
        "clears on a later try.", SLOW_DOWN, True),
    "smtp.4.7.12": Entry(
        "auth", "Password change required",
        "The mail provider wants the account's password changed before it accepts this login.",
        "Sign in to the account outside Outbox, change the password and update it on the relay; "
        "Outbox retries meanwhile.", True),
    "smtp.5.1.1": Entry(
        "recipient", "Unknown recipient",
        "The recipient's server says this mailbox does not exist.",
        "Ask the recipient for a correct address; this one does not exist.", False),
    "smtp.5.1.2": Entry(
        "recipient", "Recipient domain not found",
        "The part after the @ is not a domain that receives mail, often because of a typo.",
        "Check the domain for typos (gmial.com, .con) or ask the recipient for a correct "
        "address.", False),
    "smtp.5.1.3": Entry(
        "recipient", "Malformed recipient address",
        "The server considers the recipient address syntactically invalid.",
        "Correct the address (no spaces, one @, no display name inside it) and send again.",
        False),
    "smtp.5.1.6": Entry(
        "recipient", "Mailbox has moved",
        "The recipient no longer receives mail at this address.",
        "Ask the recipient for their new address; the server's text may name it.", False),
    "smtp.5.1.7": Entry(
        "message", "Sender address malformed",
        "The server refused the envelope sender (MAIL FROM) as syntactically invalid.",
        "Fix the message's from address and send again.", False),
    "smtp.5.1.8": Entry(
        "message", "Sender domain rejected",
        "The server refused the sender because the sender's domain does not exist or cannot "
        "receive replies.",
        "Send from an address in a domain with working DNS (MX or A records).", False),
    "smtp.5.1.10": Entry(
        "recipient", "Recipient domain accepts no mail",
        "The recipient's domain publishes a null MX: it never accepts email.", NEW_ADDRESS,
        False),
    "smtp.5.2.1": Entry(
        "mailbox", "Mailbox disabled",
        "The recipient's mailbox exists but is disabled and does not accept mail.",
        "Contact the recipient another way; resend once the mailbox is active again.", False),
    "smtp.5.2.2": Entry(
        "mailbox", "Mailbox full",
        "The recipient's mailbox is over its quota and the server will not queue the message.",
        "Ask the recipient to free space in their mailbox, then resend.", False),
    "smtp.5.2.3": Entry(
        "message", "Message too long for the recipient",
        "The message is bigger than the recipient's server accepts for one mailbox.",
        "Send large files as a link instead of an attachment, or split the message.", False),
    "smtp.5.3.4": Entry(
        "message", "Message too big",
        "The message is bigger than the server's size limit.",
        "Send large files as a link instead of an attachment, or compress them, then resend.",
        False),
    "smtp.5.4.4": Entry(
        "recipient", "No route to the recipient's domain",
        "The server found no way to deliver mail for this domain; it has no usable MX or A "
        "record.",
        "Check the domain for typos or ask the recipient for a working address.", False),
    "smtp.5.4.6": Entry(
        "relay", "Mail loop detected",
        "The message went around between servers too many times.",
        "Check routing and forwarding rules on the relay and the recipient's side.", False),
    "smtp.5.5.3": Entry(
        "message", "Too many recipients",
        "The server refused the message because it has more recipients than it allows.",
        "Split the recipient list over several messages.", False),
    "smtp.5.6.1": Entry(
        "message", "Content type not accepted",
        "The server does not accept a part of the message, usually an attachment type its "
        "filter blocks.",
        "Remove or zip the attachment, or send it as a link, then resend.", False),
    "smtp.5.6.7": Entry(
        "message", "Non-ASCII address not supported",
        "An address contains characters the server cannot handle (it does not support "
        "SMTPUTF8).", "Use an ASCII-only address for this recipient and send again.", False),
    "smtp.5.7.1": Entry(
        "policy", "Relaying denied or refused by policy",
        "The server will not take this message from Outbox: it does not relay for this sender, "
        "or a policy or spam filter refused it.",
        "If the relay refuses to relay, log in (username/password) or send from an allowed "
        "address; otherwise contact the recipient's postmaster.", False),
    "smtp.5.7.8": Entry(
        "auth", "Bad credentials",
        "The relay rejected the username and password or the OAuth2 token. The relay's mail is "
        "held, not failed.",
        "Check the relay's password by signing in outside Outbox; if the account uses MFA, create "
        "an app password, " + RELEASE, False),
    "smtp.5.7.9": Entry(
        "auth", "App password or stronger login required",
        "The provider refused a plain password for this account, typically because it has "
        "multi-factor authentication. The relay's mail is held.",
        "Create an app password for the account or switch the relay to oauth2, " + RELEASE,
        False),
    "smtp.5.7.11": Entry(
        "auth", "Encryption required for login",
        "The relay accepts this login method only over an encrypted connection.",
        "Set security \"starttls\" (port 587) or \"tls\" (port 465) on the relay, " + RELEASE,
        False),
    "smtp.5.7.14": Entry(
        "auth", "Provider wants a browser sign-in",
        "The provider blocked this login until someone signs in to the account in a browser and "
        "confirms it.",
        "Sign in to the account in a browser, follow the provider's prompt, " + RELEASE, False),
    "smtp.5.7.139": Entry(
        "auth", "SMTP login disabled for the account",
        "The provider (Microsoft 365) has authenticated SMTP turned off for this mailbox or "
        "tenant.",
        "Enable authenticated SMTP for the mailbox in the admin centre or switch the relay to "
        "oauth2, " + RELEASE, False),
    "smtp.5.7.23": Entry(
        "policy", "SPF check failed",
        "The recipient's server found that the sending domain's SPF record does not allow this "
        "relay to send for it.",
        "Add the relay to the sender domain's SPF record, or send from a domain the relay is "
        "allowed to use.", False),
    "smtp.5.7.25": Entry(
        "policy", "Reverse DNS missing",
        "The recipient's server refused mail from an IP address without a valid reverse DNS "
        "name.", "Ask the relay's operator to set a PTR record matching its host name.", False),
    "smtp.5.7.26": Entry(
        "policy", "Sender not authenticated",
        "The recipient's server refused the message because it failed SPF, DKIM or DMARC checks "
        "for the sender's domain.",
        "Publish SPF and DKIM for the sender's domain covering this relay, then resend.", False),
}


def _subject(kind: str, title: str, explanation: str, transient: bool) -> Entry:
    next_step = (SLOW_DOWN if kind == "throttle" else RETRY) if transient else POSTMASTER
    return Entry(kind, title, explanation, next_step, transient)


FALLBACKS: dict[str, Entry] = {
    "smtp.4.0.x": _subject("unknown", "Temporary failure",
                           "The server refused for now without saying why.", True),
    "smtp.4.1.x": _subject("recipient", "Temporary address problem",
                           "The server could not check an address right now.", True),
    "smtp.4.2.x": _subject("mailbox", "Mailbox unavailable for now",
                           "The recipient's mailbox cannot take mail at the moment.", True),
    "smtp.4.3.x": _subject("relay", "Mail system unavailable for now",
                           "The receiving mail system has a temporary problem.", True),
    "smtp.4.4.x": _subject("network", "Temporary network or routing problem",
                           "The server could not reach the next server on the way.", True),
    "smtp.4.5.x": _subject("relay", "Temporary protocol problem",
                           "The server had a temporary problem with the SMTP conversation.", True),
    "smtp.4.6.x": _subject("message", "Temporary problem with the content",
                           "The server could not process the message's content right now.", True),
    "smtp.4.7.x": _subject("throttle", "Refused for now by policy",
                           "The server refused for now for a security or policy reason, often "
                           "a rate limit or greylisting.", True),
    "smtp.4.x.x": _subject("unknown", "Temporary failure",
                           "The server refused for now with a status Outbox does not know.", True),
    "smtp.5.0.x": _subject("unknown", "Permanent failure",
                           "The server refused for good without saying why.", False),
    "smtp.5.1.x": _subject("recipient", "Address rejected",
                           "The server refused an address (recipient or sender) for good.", False),
    "smtp.5.2.x": _subject("mailbox", "Mailbox cannot take mail",
                           "The recipient's mailbox refused the message for good.", False),
    "smtp.5.3.x": _subject("relay", "Mail system cannot take the message",
                           "The receiving mail system cannot accept this message.", False),
    "smtp.5.4.x": _subject("network", "Cannot route the message",
                           "The server found no way to deliver to the destination.", False),
    "smtp.5.5.x": _subject("relay", "Protocol error",
                           "The server refused part of the SMTP conversation.", False),
    "smtp.5.6.x": _subject("message", "Content not accepted",
                           "The server refused the message's content or format.", False),
    "smtp.5.7.x": _subject("policy", "Refused by security policy",
                           "A security or policy rule on the server refused the message.", False),
    "smtp.5.x.x": _subject("unknown", "Permanent failure",
                           "The server refused for good with a status Outbox does not know.",
                           False),
    "smtp.2xx": Entry(
        "sent", "Accepted by the relay",
        "The relay accepted the message for this recipient; onward delivery is now its job.",
        "Nothing to do; if the recipient sees nothing, search the relay's log for the "
        "Message-ID.", False),
    "smtp.3xx": Entry(
        "unknown", "Unexpected intermediate reply",
        "The server answered with an intermediate code where SMTP requires a final answer.",
        "Send the transcript to the relay's administrator; the relay is not following SMTP.",
        False),
    "smtp.4xx": _subject("unknown", "Temporary failure",
                         "The server refused for now with a code Outbox has no entry for.", True),
    "smtp.5xx": _subject("unknown", "Permanent failure",
                         "The server refused for good with a code Outbox has no entry for.",
                         False),
    "smtp.unknown": Entry(
        "unknown", "Unreadable reply",
        "The server answered with a code outside SMTP's range, so Outbox cannot tell whether "
        "the failure is temporary.",
        "Check that the relay's host and port lead to an SMTP server, then resend.", False),
    "auth.rejected": Entry(
        "auth", "Relay refused the login",
        "The relay answered Outbox's AUTH with a permanent error, so it will not take mail from "
        "this account as configured. The relay's mail is held, not failed.",
        "Check the relay's username, password or oauth2 settings by signing in outside Outbox; "
        "if the account uses MFA, create an app password, " + RELEASE, False),
}
