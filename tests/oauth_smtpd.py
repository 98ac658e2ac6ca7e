"""An OAuth2 provider for tests: a real HTTP token endpoint and an aiosmtpd relay
that speaks XOAUTH2, sharing one `Authority` that issues and checks tokens.

    authority = Authority(refresh_tokens={"rt-1"})
    with TokenEndpoint(authority) as endpoint, xoauth2_server(authority) as relay:
        ...  # oauth2 = {token_url = endpoint.url, client_id = CLIENT_ID, ...}

The endpoint implements the refresh_token grant (RFC 6749 §6) on
127.0.0.1, answering errors as RFC 6749 §5.2 JSON. `date_offset` shifts its
`Date` header (a provider whose clock is off, as seen from Outbox);
`rotate` issues a new refresh token with every access token; `trickle` > 0
makes it answer 200 and then send one byte of body every `trickle` seconds,
never finishing (each read is quick, the answer never complete).

The relay accepts `AUTH XOAUTH2 <base64 user=...^Aauth=Bearer TOKEN^A^A>` for
a token the authority issued and has not revoked; otherwise it answers like
Gmail: `334 <base64 JSON error>`, then `535 5.7.8` after the client's empty line.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.http_thread import LoopbackHttp
from tests.smtpd import RecordingHandler, ScriptedServer, _connection_log

CLIENT_ID = "outbox-test-client"
CLIENT_SECRET = "client-secret-Zq8Vd2"
MAILBOX = "mailer@example.test"
_ERROR_PAYLOAD = {"status": "401", "schemes": "bearer", "scope": "https://mail.example.test/"}


@dataclass
class Authority:
    """Issues access tokens for refresh tokens; the relay asks it what is valid."""

    refresh_tokens: set[str] = field(default_factory=set)
    client_secret: str = CLIENT_SECRET
    expires_in: int = 3600
    rotate: bool = False
    date_offset: float = 0.0  # seconds added to the endpoint's Date header
    trickle: float = 0.0  # > 0: seconds between body bytes of an answer that never ends
    issued: list[str] = field(default_factory=list)  # every access token, in order
    revoked: set[str] = field(default_factory=set)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # tokens the relay logged in with
    rejected: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint's answer to one request: (status, JSON body)."""
        with self._lock:
            self.token_requests.append(form)
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != (
                    self.client_secret):
                return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {"error": "invalid_grant",
                             "error_description": "Token has been expired or revoked."}
            return 200, self._issue(form["refresh_token"])

    def _issue(self, refresh_token: str) -> dict[str, Any]:
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.issued.append(token)
        body: dict[str, Any] = {"access_token": token, "expires_in": self.expires_in,
                                "token_type": "Bearer"}
        if self.rotate:
            new = f"rt-{secrets.token_urlsafe(12)}"
            self.refresh_tokens.discard(refresh_token)
            self.refresh_tokens.add(new)
            body["refresh_token"] = new
        return body

    def check(self, token: str) -> bool:
        with self._lock:
            valid = token in self.issued and token not in self.revoked
            (self.accepted if valid else self.rejected).append(token)
            return valid

    def revoke_all(self) -> None:
        """Every access token and refresh token issued so far stops working."""
        with self._lock:
            self.revoked.update(self.issued)
            self.refresh_tokens.clear()

    def secrets(self) -> set[str]:
        """Everything secret this provider handed out, for leak checks."""
        with self._lock:
            tokens = {t for t in self.issued} | {self.client_secret}
            tokens |= {r.get("refresh_token", "") for r in self.token_requests}
            return {t for t in tokens | self.refresh_tokens if t}


class _TokenHandler(BaseHTTPRequestHandler):
    authority: Authority

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.authority.trickle > 0:
            return self._trickle()
        status, body = self.authority.grant(form) if self.path == "/token" else (404, {})
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            for _ in range(3600):  # until the client hangs up (or an hour)
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(self.authority.trickle)
        except OSError:
            pass  # the client gave up: what a well-behaved client does

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate((timestamp or time.time()) + self.authority.date_offset, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TokenEndpoint:
    """The authority's token endpoint on a free loopback port, in a thread."""

    def __init__(self, authority: Authority) -> None:
        self._http = LoopbackHttp(type("Handler", (_TokenHandler,), {"authority": authority}))

    @property
    def url(self) -> str:
        return f"{self._http.base}/token"

    def start(self) -> TokenEndpoint:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> TokenEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class XOAuth2Handler(RecordingHandler):
    """A recording handler whose relay offers (only) AUTH XOAUTH2."""

    def __init__(self, authority: Authority, mailbox: str = MAILBOX) -> None:
        super().__init__(None)
        self.authority = authority
        self.mailbox = mailbox

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses  # keep the AUTH line: the base class drops it without credentials

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = args[1] if len(args) > 1 else ""
        user, token = _parse_xoauth2(blob)
        if user == self.mailbox and self.authority.check(token):
            _connection_log(server).authenticated_as = user
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(json.dumps(_ERROR_PAYLOAD))  # the client answers ""
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and "
                          "Password not accepted. Learn more at https://support.example.test/auth")


def _parse_xoauth2(blob: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(blob, validate=True).decode()
    except ValueError:
        return "", ""
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    return fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")


def xoauth2_server(authority: Authority, mailbox: str = MAILBOX) -> ScriptedServer:
    """A relay on a free loopback port offering AUTH XOAUTH2 (not started)."""
    return ScriptedServer(handler=XOAuth2Handler(authority, mailbox), auth_mechanisms=())
