"""Why a relay is marked `needs_attention`, in words true to the cause.

The mark (`delivery.credentials.CredentialVault.mark_needs_attention`) is made when the
relay refused a login, but also in four cases where no login was tried: the relay
refused mail for want of a login and none is configured (`login_required`), Outbox
would not send credentials over an unencrypted connection (`auth_needs_tls`), the relay
offers none of the login methods the credentials need (`auth_not_offered`), and the
OAuth2 token endpoint gave no access token (`token_refresh_failed`). The alert, doctor,
the events of the held mail and the gate's "not sent" reports all word a mark with
`attention_cause`, so that none says "its login failed" of a login that never happened
(found by a stranger pass); the next step comes from the mark's guidance key.
"""

from __future__ import annotations

from outbox.core.guidance_outbox import LOGIN_REQUIRED
from outbox.core.report import Condition

# The mark's guidance key → what happened, for the marks made without a login tried.
_NOT_TRIED = {
    LOGIN_REQUIRED: "it requires a login and none is configured",
    Condition.AUTH_NEEDS_TLS.value: "Outbox did not log in, as the connection is not "
                                    "encrypted",
    Condition.AUTH_NOT_OFFERED.value: "Outbox did not log in, as the relay offers no login "
                                      "method its credentials can use",
    Condition.TOKEN_REFRESH_FAILED.value: "Outbox did not log in, as it got no OAuth2 access "
                                          "token",
}
_NOT_CONFIRMED = "its login was not confirmed"
_FAILED = "its login failed"


def login_tried(guidance: str) -> bool:
    """Whether a mark with this guidance key was made for a login the relay answered."""
    return guidance not in _NOT_TRIED


def attention_cause(reason: str, guidance: str) -> str:
    """What made the relay need attention, with what it said (`reason`) if anything."""
    if guidance in _NOT_TRIED:
        cause = _NOT_TRIED[guidance]
    elif guidance == Condition.AUTH_NOT_CONFIRMED.value:
        cause = _NOT_CONFIRMED
    else:
        cause = _FAILED
    return f"{cause} ({reason})" if reason else cause
