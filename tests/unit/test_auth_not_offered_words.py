"""An oauth2 relay whose server offers only PLAIN and LOGIN (over STARTTLS): a tester saw
"offered no login method ... often because TLS is not on" (TLS was on) and the detail
"the relay offers LOGIN, PLAIN; Outbox can use XOAUTH2". The detail now says the relay
does not offer XOAUTH2, and the guidance says what to do without assuming TLS is off."""

from __future__ import annotations

from pydantic import SecretStr

from outbox.config import OAuth2Settings, RelaySettings
from outbox.core import guidance
from outbox.core.report import Condition
from outbox.delivery.auth import authenticators_for, choose_authenticator
from outbox.delivery.oauth import TokenSource


def test_an_oauth2_relay_offered_only_passwords_is_told_so() -> None:
    oauth = OAuth2Settings(token_url="https://login.example.test/token", client_id="c",
                           client_secret=SecretStr("s"), refresh_token=SecretStr("r"))
    relay = RelaySettings(name="r", host="smtp.example.test", security="starttls",
                          username="me@example.test", oauth2=oauth)
    mine = authenticators_for(relay, TokenSource(oauth))
    chosen = choose_authenticator(mine, ["LOGIN", "PLAIN"], safe=True)
    assert chosen == (Condition.AUTH_NOT_OFFERED,
                      "the relay does not offer XOAUTH2 (it offers LOGIN, PLAIN)")
    words = guidance.describe(Condition.AUTH_NOT_OFFERED.value)
    assert "often because TLS is not on" not in words.explanation
    assert "XOAUTH2" in words.explanation and "XOAUTH2" in words.next_step
