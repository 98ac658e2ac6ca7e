"""The OAuth2 authorization-code grant with PKCE (RFC 6749 §4.1, RFC 7636): the URL a
person's browser is sent to, and the exchange of the returned code for a refresh token
at the relay's token endpoint. The web UI's "Connect with OAuth2" runs it; the refresh
token then goes where `outbox relay set-credentials` puts one.

Errors never carry the code, the verifier, a token or the client secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from outbox.config import OAuth2Settings
from outbox.delivery.oauth import (
    TIMEOUT,
    TokenEndpointUnavailable,
    TokenRefreshFailed,
    _error_text,
    _json,
    _scrub,
)


@dataclass(frozen=True, slots=True)
class Authorization:
    """Where to send the browser, and what to keep until it comes back."""

    url: str
    state: str
    verifier: str


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization(oauth: OAuth2Settings, redirect_uri: str) -> Authorization:
    state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = {"response_type": "code", "client_id": oauth.client_id,
             "redirect_uri": redirect_uri, "state": state,
             "code_challenge": code_challenge(verifier), "code_challenge_method": "S256",
             "access_type": "offline", "prompt": "consent"}
    if oauth.scope:
        query["scope"] = oauth.scope
    sep = "&" if "?" in oauth.authorize_url else "?"
    return Authorization(f"{oauth.authorize_url}{sep}{urlencode(query)}", state, verifier)


async def exchange_code(oauth: OAuth2Settings, code: str, verifier: str,
                        redirect_uri: str) -> str:
    """The refresh token the token endpoint gives for this code; `TokenRefreshFailed`
    naming the provider's error when it refuses (e.g. invalid_grant: redirect_uri
    mismatch), `TokenEndpointUnavailable` when it cannot be asked."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": oauth.client_id, "code_verifier": verifier}
    secret = oauth.client_secret.get_secret_value()
    if secret:
        form["client_secret"] = secret
    import httpx  # only here: the web UI's OAuth2 connect

    try:
        async with asyncio.timeout(TIMEOUT), httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.post(oauth.token_url, data=form,
                                         headers={"Accept": "application/json"})
    except (TimeoutError, httpx.HTTPError) as exc:
        raise TokenEndpointUnavailable(f"the token endpoint {oauth.token_url} could not be "
                                       f"reached ({type(exc).__name__})") from exc
    body = _json(response)
    refresh = body.get("refresh_token")
    if response.status_code != 200 or not isinstance(refresh, str) or not refresh:
        hidden = frozenset(filter(None, (code, verifier, secret)))
        why = _error_text(body) or ": no refresh_token in the answer"
        raise TokenRefreshFailed(_scrub(f"the token endpoint refused the authorization code "
                                        f"({response.status_code}{why})", hidden),
                                 hint="check the client id and secret and that the redirect "
                                      "URI registered with the provider is exactly the one "
                                      "shown, then connect again")
    return refresh
