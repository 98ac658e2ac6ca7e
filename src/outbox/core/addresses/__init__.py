"""Recipient addresses: parse, validate and de-duplicate them. Pure: no I/O, no DNS.

Accepted, in one string or in a list of strings (an element may hold several addresses):

- separators ``,`` and ``;``, mixed; empty entries and trailing separators are ignored;
- ``a@x.test``, ``<a@x.test>``, ``Ann <a@x.test>``, ``"Doe, John" <j@x.test>`` (a quoted
  display name may hold commas, semicolons and ``\\"``-escaped quotes);
- RFC 5322 groups: ``Team: a@x.test, b@x.test;`` gives its members (the group's name is not
  kept); ``undisclosed-recipients:;`` gives none; a group still open at the end of a value
  is closed there;
- comments ``(like this)`` count as whitespace and are dropped;
- whitespace between tokens. A line break only where it cannot reach a header: next to a
  separator or at either end of a value (a pasted list). A line break anywhere else, or a NUL
  anywhere, is refused as header injection, never cleaned.

Validation is email-validator in syntax mode (never DNS). Not supported: quoted local parts
(``"john doe"@x.test``), IP-literal domains, RFC 2047 encoded words in input (kept literally).
Special-use domains (``.test``, ``.example``, ``.invalid``, ``.localhost``) pass, so Outbox
works offline. Domains go out as IDNA punycode; a non-ASCII local part needs a relay with
SMTPUTF8 and is refused unless ``allow_smtputf8=True``.

Errors are `InvalidAddress` with ``field`` as a JSON path: ``to[2]`` is element 2 of a list,
or the third address of a single string; a single mailbox (``from``) has no index.

The package, bottom up: `validate` (the checks on one mailbox), `address` (the `Address`
value and its header form), `tokens` (the lexer), `entries` (the splitter: entries, groups,
display name and addr-spec), `parse` (the public parsing functions), `recipients` (To, Cc
and Bcc de-duplicated). Callers import from the package, not from its modules.
"""

from outbox.core.addresses.address import Address, format_addresses, mailbox_key, quote_phrase
from outbox.core.addresses.parse import (
    address_errors,
    parse_addresses,
    parse_mailbox,
    split_entries,
)
from outbox.core.addresses.recipients import (
    EnvelopeRecipient,
    RecipientKind,
    RecipientPlan,
    plan_envelope,
    plan_recipients,
)
from outbox.core.addresses.validate import (
    ATEXT,
    DOTS_AND_ATEXT,
    LINE_BREAKS,
    SPECIAL_USE_DOMAINS,
)

__all__ = [
    "ATEXT",
    "DOTS_AND_ATEXT",
    "LINE_BREAKS",
    "SPECIAL_USE_DOMAINS",
    "Address",
    "EnvelopeRecipient",
    "RecipientKind",
    "RecipientPlan",
    "address_errors",
    "format_addresses",
    "mailbox_key",
    "parse_addresses",
    "parse_mailbox",
    "plan_envelope",
    "plan_recipients",
    "quote_phrase",
    "split_entries",
]
