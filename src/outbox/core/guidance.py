"""Plain-words guidance for every failure: what happened and what to do.

A guidance key is what Outbox stores on an outcome or event; `describe`
renders it, for the API, the CLI and the UI. Keys come from two places:

- `key_for_reply(reply)` names the most specific catalogue entry for an SMTP
  reply: the exact enhanced code (`smtp.5.1.1`), else the basic code
  (`smtp.530`), else the enhanced subject (`smtp.5.7.x`) or class
  (`smtp.5.x.x`), else the basic class (`smtp.5xx`); for a basic code servers
  use loosely (`LOOSE_BASIC_CODES`: 550, 552, ...) a defined enhanced subject
  (not `x.0.x`) comes before it. A permanent reply to AUTH names an auth entry (`smtp.5.7.8`,
  `smtp.535`) or `auth.rejected`.
- Conditions that are not replies: every `report.Condition` value,
  `uncertain_delivery`, and Outbox's own decisions (`relay_needs_attention`,
  `held_by_policy`, `max_attempts_reached`, ...).

The reply entries live in `guidance_catalogue`, the session conditions here,
Outbox's own in `guidance_outbox`.
`describe` never raises: an unknown key gets a generic entry, and when a reply
is given its text is quoted, so the operator always sees what the server said.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from outbox.core.guidance_bounces import BOUNCE_CONDITIONS
from outbox.core.guidance_catalogue import (
    BASIC_CODES,
    ENHANCED_CODES,
    FALLBACKS,
    RELEASE,
    RETRY_ASK_ADMIN,
    Entry,
)
from outbox.core.guidance_outbox import GAVE_UP_UNCERTAIN as GAVE_UP_UNCERTAIN
from outbox.core.guidance_outbox import LOGIN_REQUIRED as LOGIN_REQUIRED
from outbox.core.guidance_outbox import OUTBOX_CONDITIONS
from outbox.core.guidance_outbox import UNCERTAIN_DELIVERY as UNCERTAIN_DELIVERY
from outbox.core.model import Reply
from outbox.core.report import Condition


@dataclass(frozen=True, slots=True)
class Guidance:
    key: str
    kind: str
    title: str
    explanation: str
    next_step: str
    retryable: bool

    def one_line(self) -> str:
        return f"{self.title}: {self.explanation} Next step: {self.next_step}"


AUTH_REJECTED = "auth.rejected"
UNKNOWN_REPLY = "smtp.unknown"

GREETING_TIMEOUT = "greeting_timeout"  # connected, then no 220 in time: not a firewall
_TLS_SETTINGS = "Use security \"tls\" with port 465, \"starttls\" with port 587 or 25"

CONDITIONS: dict[str, Entry] = {
    Condition.CONNECTION_REFUSED.value: Entry(
        "network", "Connection refused",
        "Nothing accepted Outbox's connection at the relay's host and port: the relay is down, "
        "the port is wrong, or a firewall rejects the connection.",
        "Check the relay's host and port (25, 465 or 587) and that this machine may connect to "
        "that port; Outbox retries meanwhile.", True),
    Condition.CONNECTION_TIMEOUT.value: Entry(
        "network", "Connection timed out",
        "The relay did not answer the connection in time; the host is down or a firewall is "
        "silently dropping the traffic.",
        "Check that the relay is reachable from this machine (`outbox doctor`) and that no "
        "firewall or antivirus blocks the port; Outbox retries meanwhile.", True),
    GREETING_TIMEOUT: Entry(
        "network", "Relay connected but never greeted",
        "The relay accepted the connection but sent no greeting (220) within [delivery] "
        "connect_timeout: the service behind the port hangs or is overloaded, or it is not "
        "plain SMTP (a TLS port such as 465 needs security \"tls\").",
        "Check the relay's port and security (`outbox relay test NAME`), and ask its "
        "administrator why it does not answer; Outbox retries meanwhile.", True),
    Condition.CONNECTION_DROPPED.value: Entry(
        "network", "Connection dropped",
        "The connection to the relay closed in the middle of the conversation, before the "
        "message was handed over.", RETRY_ASK_ADMIN, True),
    Condition.COMMAND_TIMEOUT.value: Entry(
        "network", "Relay stopped answering",
        "The relay stopped replying in the middle of the conversation and Outbox gave up "
        "waiting.", RETRY_ASK_ADMIN, True),
    Condition.DNS_FAILURE.value: Entry(
        "network", "Relay host name not found",
        "Outbox could not resolve the relay's host name to an address.",
        "Check the spelling of the relay's host and this machine's DNS resolver; Outbox retries "
        "meanwhile.", True),
    Condition.NETWORK_UNREACHABLE.value: Entry(
        "network", "Network unreachable",
        "This machine has no route to the relay's address; its network link or route is down.",
        "Check this machine's network connection and routes (IPv6 too if the relay resolves to "
        "it); Outbox retries meanwhile.", True),
    Condition.TLS_CERT_EXPIRED.value: Entry(
        "tls", "Relay's TLS certificate expired",
        "The relay presented a certificate past its expiry date, so Outbox would not send over "
        "it. Retries fail until it is renewed.",
        "Ask the relay's administrator to renew the certificate; if this machine's clock is "
        "wrong, turn on NTP.", True),
    Condition.TLS_HOSTNAME_MISMATCH.value: Entry(
        "tls", "TLS certificate is for another name",
        "The relay's certificate does not name the host Outbox connected to, so the connection "
        "could be intercepted.",
        "Set the relay's host to the name on its certificate (not an IP address or alias), or ask "
        "its administrator to fix the certificate.", True),
    Condition.TLS_SELF_SIGNED.value: Entry(
        "tls", "Relay uses a self-signed certificate",
        "The relay's certificate was not issued by any authority, so Outbox cannot verify it.",
        "Save the relay's certificate and point ca_file at it; use tls_verify = false "
        "only on a network you trust.", True),
    Condition.TLS_UNKNOWN_CA.value: Entry(
        "tls", "TLS certificate from an unknown authority",
        "The relay's certificate comes from an authority this machine does not trust, often a "
        "private company CA or a missing intermediate certificate.",
        "Set ca_file on the relay to the issuing CA's certificate, or ask the relay's "
        "administrator to serve the full chain.", True),
    Condition.TLS_VERSION_MISMATCH.value: Entry(
        "tls", "No common TLS version",
        "Outbox and the relay could not agree on a TLS version; the relay probably offers only "
        "an old version (TLS 1.0 or 1.1) that is disabled here.",
        "Ask the relay's administrator to enable TLS 1.2 or later.", True),
    Condition.TLS_HANDSHAKE_FAILED.value: Entry(
        "tls", "TLS handshake failed",
        "The encrypted connection to the relay could not be set up; often security \"tls\" is "
        "used on a STARTTLS port, or the reverse.",
        _TLS_SETTINGS + ", then run `outbox doctor`.", True),
    Condition.STARTTLS_NOT_OFFERED.value: Entry(
        "tls", "Relay does not offer STARTTLS",
        "The relay did not offer STARTTLS, and Outbox will not send over an unencrypted "
        "connection that is configured as encrypted.",
        _TLS_SETTINGS + ", or ask the administrator to enable STARTTLS; security \"none\" only "
        "on a trusted network.", True),
    Condition.AUTH_NOT_OFFERED.value: Entry(
        "auth", "Relay does not offer Outbox's login method",
        "Credentials are set for this relay but it offered none of the login methods Outbox "
        "would use with them (the detail names what it offers): an oauth2 login needs "
        "XOAUTH2, a password PLAIN or LOGIN, and without TLS many relays offer none. The "
        "relay's mail is held.",
        "`outbox relay test NAME --transcript` shows what the relay offers (its EHLO answer); "
        "if TLS is off, turn it on; for "
        "oauth2, use the provider's host that offers XOAUTH2 or a password (an app password) "
        "instead; remove the credentials if the relay needs none, " + RELEASE, False),
    Condition.AUTH_NOT_CONFIRMED.value: Entry(
        "auth", "Login not confirmed by the relay",
        "The relay answered the login with something other than 235 (logged in), so Outbox "
        "cannot tell that it is logged in and sends nothing through it; a test sink that says "
        "250 to everything does this. The relay's mail is held.",
        "Check that host and port are the relay's SMTP submission service (`outbox relay test "
        "NAME` shows the conversation); if it needs no login, remove username and password, "
        + RELEASE, False),
    Condition.AUTH_NEEDS_TLS.value: Entry(
        "auth", "Login needs TLS",
        "Outbox will not send the relay's password over an unencrypted connection. The relay's "
        "mail is held.",
        "Set security \"starttls\" or \"tls\" on the relay (allow_insecure_auth = true only on a "
        "trusted network), " + RELEASE, False),
    Condition.TOKEN_REFRESH_FAILED.value: Entry(
        "auth", "OAuth2 token refresh failed",
        "Outbox could not get a new access token: the refresh token may be revoked or expired, "
        "the client secret wrong, or the clock off. The relay's mail is held.",
        "Re-run the provider's OAuth2 consent and store the new refresh token with `outbox "
        "relay set-credentials NAME` (or PUT /v1/relays/NAME/credentials); that releases the "
        "held mail.", False),
    Condition.TOKEN_ENDPOINT_UNAVAILABLE.value: Entry(
        "network", "OAuth2 token endpoint unavailable",
        "Outbox could not get an access token because the provider's token endpoint did not "
        "answer or answered with a server error.",
        "Check that this machine can reach the relay's oauth2 token_url; Outbox retries "
        "meanwhile.", True),
    Condition.RELAY_BACKING_OFF.value: Entry(
        "network", "Relay backing off",
        "The relay failed as a whole (refused, timed out, broke TLS or asked Outbox to go "
        "away), so Outbox waits before using it again, longer after each failure, and then "
        "tries it with one session first. The waiting mail spends no attempts.",
        "Run `outbox relay ls` to see until when; fix the relay if it stays down. Nothing to do "
        "if it comes back.", True),
    Condition.RELAY_SESSIONS_BUSY.value: Entry(
        "network", "Relay busy with earlier mail",
        "Every session Outbox may open to the relay was busy with earlier mail, and this "
        "message waited several seconds for one, so it went back to the queue until about "
        "when its turn comes. It spends no attempt, and it can be cancelled meanwhile.",
        "Nothing to do if the relay is slow only for a while. `outbox queue ls --relay NAME "
        "--status deferred` lists its waiting mail; raise the relay's max_connections if it "
        "allows more sessions.", True),
    Condition.AWAITING_CREDENTIALS.value: Entry(
        "auth", "Relay waiting for new credentials",
        "The relay refused Outbox's last login, so Outbox holds its mail without logging in "
        "again (repeated failed logins can lock the account).",
        "Fix the login as the relay's alert says and store it with `outbox relay "
        "set-credentials NAME` (or PUT /v1/relays/NAME/credentials); if the account itself was "
        "fixed, run `outbox relay test NAME`. Either releases the held mail.", False),
    Condition.MESSAGE_TOO_BIG.value: Entry(
        "message", "Message bigger than the relay allows",
        "The message is larger than the SIZE limit the relay advertises, so Outbox did not try "
        "to send it.",
        "Send large files as a link instead of an attachment, or ask the relay's administrator "
        "to raise its size limit.", False),
    Condition.SMTPUTF8_REQUIRED.value: Entry(
        "message", "Relay cannot take non-ASCII addresses",
        "An address contains non-ASCII characters and the relay does not support SMTPUTF8.",
        "Use an ASCII-only address, or a relay that supports SMTPUTF8.", False),
    Condition.PROTOCOL_ERROR.value: Entry(
        "relay", "Unexpected answer from the relay",
        "The relay broke the SMTP conversation, for example by answering out of turn or ending "
        "the session without a reply.",
        "Outbox will retry automatically; if it keeps happening, send the transcript to the "
        "relay's administrator.", True),
    Condition.RELAY_NOT_CONFIGURED.value: Entry(
        "relay", "Relay no longer configured",
        "This mail was routed to a relay that is no longer in the configuration, so Outbox "
        "holds it instead of failing it.",
        "Add the relay back to [[relays]] or fix the [[routes]] that name it, " + RELEASE, False),
}

def _build() -> Mapping[str, Guidance]:
    tables = (ENHANCED_CODES, BASIC_CODES, FALLBACKS, CONDITIONS, OUTBOX_CONDITIONS,
              BOUNCE_CONDITIONS)
    entries = {key: entry for table in tables for key, entry in table.items()}
    return MappingProxyType({key: Guidance(key, *entry) for key, entry in entries.items()})


CATALOGUE: Mapping[str, Guidance] = _build()


def all_keys() -> list[str]:
    """Every key the catalogue has an entry for, in catalogue order."""
    return list(CATALOGUE)


def key_for_reply(reply: Reply, *, during_auth: bool = False) -> str:
    """The most specific catalogue key for a reply. `during_auth` is set for
    replies to AUTH, where any 5xx is a credentials problem."""
    keys = _matching_keys(reply)
    if during_auth:
        auth_keys = [key for key in keys if CATALOGUE[key].kind == "auth"]
        if auth_keys:
            return auth_keys[0]
        if reply.is_permanent:
            return AUTH_REJECTED
    return keys[0] if keys else UNKNOWN_REPLY


def describe(key: str, reply: Reply | None = None) -> Guidance:
    """The entry for `key`, quoting the server's reply when one is given.
    Never raises: an unknown key gets a generic entry."""
    guidance = CATALOGUE.get(key) or _generic(key, reply)
    if reply is None:
        return guidance
    return replace(guidance, explanation=f"{guidance.explanation} {_quote(reply)}")


# Basic codes servers give for many reasons: with one of these, the enhanced code's
# subject says more (RFC 3463), as Gmail's `552 5.7.0 ... content presents a potential
# security issue` is a content block, not a full mailbox. Other basic codes keep their
# own meaning first: 421 closes the session, 530 asks for a login (RFC 4954) whatever
# 5.7.x it carries.
LOOSE_BASIC_CODES = frozenset({450, 451, 452, 550, 551, 552, 553, 554})
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})", re.ASCII)
_QUOTE_LIMIT = 300
_KEY_LIMIT = 80


def _matching_keys(reply: Reply) -> list[str]:
    """Catalogue keys that fit the reply, most specific first."""
    code_class = str(reply.code // 100) if 200 <= reply.code < 600 else None
    enhanced = _enhanced_parts(reply.enhanced, code_class)
    names = []
    if enhanced:
        names.append("smtp.{}.{}.{}".format(*enhanced))
    subject = ["smtp.{}.{}.x".format(*enhanced)] if enhanced else []
    basic = f"smtp.{reply.code}"
    # Subject 0 is "other or undefined" (RFC 3463): it says no more than the basic code.
    precise = enhanced is not None and enhanced[1] != "0" and reply.code in LOOSE_BASIC_CODES
    names += [*subject, basic] if precise else [basic, *subject]
    if enhanced:
        names.append(f"smtp.{enhanced[0]}.x.x")
    if code_class:
        names.append(f"smtp.{code_class}xx")
    return [name for name in names if name in CATALOGUE]


def _enhanced_parts(enhanced: str | None, code_class: str | None) -> tuple[str, str, str] | None:
    """`class, subject, detail` without leading zeros, or None when absent,
    malformed, or of another class than the basic code (RFC 3463)."""
    match = _ENHANCED.fullmatch(enhanced or "")
    if match is None or match.group(1) != code_class:
        return None
    return match.group(1), str(int(match.group(2))), str(int(match.group(3)))


def _generic(key: str, reply: Reply | None) -> Guidance:
    return Guidance(
        key=key, kind="unknown", title="Unrecognised problem",
        explanation=f'Outbox has no guidance for "{_one_line(key, _KEY_LIMIT)}".',
        next_step="Check the attempt's transcript and the relay's logs for this time; "
                  "if it keeps happening, send a support bundle (`outbox support-bundle`).",
        retryable=reply is not None and reply.is_transient)


def _quote(reply: Reply) -> str:
    return f'The server said: "{_one_line(str(reply), _QUOTE_LIMIT)}".'


def _one_line(text: str, limit: int) -> str:
    """Whitespace (newlines included) collapsed, cut at `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
