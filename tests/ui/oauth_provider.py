"""A real local OAuth2 authorization server for the UI's "Connect with OAuth2": an
authorization endpoint (consent granted at once, PKCE S256 required, redirect URIs
checked against the registered ones) and a token endpoint that redeems codes (checking
the verifier, the client and the redirect URI) and otherwise answers as
`tests.oauth_smtpd.Authority` does (the refresh_token grant the relay's XOAUTH2 login
uses).

A redirect URI that is not registered is answered as GitHub does: the browser goes to
the registered one with `error=redirect_uri_mismatch`."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.http_thread import LoopbackHttp
from tests.oauth_smtpd import CLIENT_ID, CLIENT_SECRET, Authority


@dataclass
class Grant:
    challenge: str
    redirect_uri: str


@dataclass
class Provider:
    authority: Authority
    registered: list[str]
    codes: dict[str, Grant] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    redeemed: list[str] = field(default_factory=list)  # refresh tokens issued for codes
    pkce_failures: int = 0

    def authorize(self, query: dict[str, str]) -> str:
        """Where the browser goes next (the Location of the 302)."""
        self.authorize_requests.append(query)
        uri, state = query.get("redirect_uri", ""), query.get("state", "")
        if uri not in self.registered:
            return _with(self.registered[0], error="redirect_uri_mismatch", state=state,
                         error_description=f"The redirect_uri {uri} is not associated "
                                           "with this application.")
        if query.get("client_id") != CLIENT_ID:
            return _with(uri, error="unauthorized_client", state=state,
                         error_description="unknown client")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return _with(uri, error="invalid_request", state=state,
                         error_description="PKCE (S256) is required")
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(query["code_challenge"], uri)
        return _with(uri, code=code, state=state)

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "authorization_code":
            return self.authority.grant(form)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown code"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        verifier = form.get("code_verifier", "").encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if digest.decode() != grant.challenge:
            self.pkce_failures += 1
            return 400, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        refresh = f"rt-{secrets.token_urlsafe(12)}"
        self.authority.refresh_tokens.add(refresh)
        self.redeemed.append(refresh)
        return 200, {"access_token": f"ya29.{secrets.token_urlsafe(12)}", "expires_in": 3600,
                     "token_type": "Bearer", "refresh_token": refresh}


def _with(uri: str, **params: str) -> str:
    sep = "&" if urlsplit(uri).query else "?"
    return f"{uri}{sep}{urlencode(params)}"


class _Handler(BaseHTTPRequestHandler):
    provider: Provider

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/authorize":
            return self._json(404, {})
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.send_response(302)
        self.send_header("Location", self.provider.authorize(query))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.path != "/token":
            return self._json(404, {})
        self._json(*self.provider.token(form))

    def _json(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProviderServer:
    def __init__(self, provider: Provider) -> None:
        self._http = LoopbackHttp(type("Handler", (_Handler,), {"provider": provider}))

    @property
    def base(self) -> str:
        return self._http.base

    def __enter__(self) -> ProviderServer:
        self._http.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.stop()
