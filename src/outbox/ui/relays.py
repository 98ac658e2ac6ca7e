"""Relays: each relay's settings (never a secret), login and delivery state; "test
connection" (the doctor's login check, shown in place by htmx); set credentials, tried
against the relay first as `outbox relay set-credentials` does (a login the relay refuses
stores nothing, and its answer is shown); clear stored credentials (after a
confirmation), as `outbox relay clear-credentials`; and "Connect with OAuth2": the
authorization-code flow with PKCE against the relay's authorize_url, back to
/ui/oauth/callback, the refresh token stored as `outbox relay set-credentials` stores
it. A provider's refusal (a redirect URI it does not know, a client it does not know)
is shown by name with the fix."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from outbox.errors import CredentialsIncomplete, InputError, LoginNotVerified
from outbox.service.relays import CredentialsUpdate
from outbox.ui import notices
from outbox.ui.render import error_page, page, templates
from outbox.ui.session import Admin, Sender, Service, Session, Viewer, current

router = APIRouter()
CALLBACK = "/ui/oauth/callback"
FLOW_TTL = 600.0  # seconds a started connection may take


@dataclass(frozen=True, slots=True)
class Flow:
    relay: str
    verifier: str
    redirect_uri: str
    user: str
    expires: float


_FLOWS: dict[str, Flow] = {}  # state -> flow; the verifier never leaves this process


def redirect_uri(request: Request) -> str:
    public = request.app.state.outbox.settings.ui.public_url.rstrip("/")
    origin = public or f"{request.url.scheme}://{request.url.netloc}"
    return f"{origin}{CALLBACK}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a form of one relay did nothing, shown in that relay's card."""

    relay: str
    message: str
    hint: str


# What the UI's form lacks, by the field a CredentialsIncomplete names (its own hint
# names the HTTP API's route, no help on this page).
_MISSING = {"username": "fill in User name under Set credentials",
            "password": "enter the password under Set credentials"}
_OTHER = "use Connect with OAuth2, or `outbox relay set-credentials` for an OAuth2 client"


@router.get("/relays", response_class=HTMLResponse)
async def relays_page(request: Request, session: Viewer, outbox: Service,
                      notice: Annotated[str, Query()] = "",
                      clear: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:
    """`clear`: the relay whose Clear stored credentials asks for its confirmation."""
    return await _page(request, session, outbox, notice=notice, clear=clear)


async def _page(request: Request, session: Session, outbox: Service, *, code: int = 200,
                notice: str = "", clear: str = "", problem: Problem | None = None
                ) -> HTMLResponse:
    relays = []
    for status in await outbox.relays.statuses():
        oauth = outbox.relays.relay(status.name).oauth2
        relays.append((status, bool(oauth and oauth.authorize_url)))
    return page(request, "relays.html", session, code=code, relays=relays, notice=notice,
                clear=clear if session.can("admin") else "", problem=problem,
                redirect_uri=redirect_uri(request))


@router.post("/relays/{name}/test", response_class=HTMLResponse)
async def test_relay(request: Request, name: str, session: Sender,
                     outbox: Service) -> HTMLResponse:
    result = await outbox.relays.test(name)
    return templates.TemplateResponse(request, "_relay_test.html", {
        "name": name, "ok": result.result.ok, "transcript": result.result.transcript,
        "guidance": result.guidance, "released": result.released,
        "mechanism": result.result.info.auth_mechanism, "username": result.relay.username})


@router.post("/relays/{name}/credentials")
async def set_credentials(request: Request, name: str, session: Admin, outbox: Service,
                          username: Annotated[str, Form()] = "",
                          password: Annotated[str, Form()] = "") -> Response:
    """Log in with them first (nothing sent), as the CLI does; store only what works."""
    if not username.strip() and not password:
        return await _refused(request, session, outbox, Problem(
            name, "Nothing stored: the form was empty.", "enter the password (and the user "
            "name) to store; to forget stored credentials, use Clear stored credentials"))
    update = CredentialsUpdate(username=username or None, password=password or None)
    try:
        _, released = await outbox.relays.set_credentials(name, update, verify=True)
    except LoginNotVerified as exc:
        return await _refused(request, session, outbox, Problem(name, _sentence(exc.message),
                                                                _clause(exc.hint)))
    except InputError as exc:
        incomplete = isinstance(exc, CredentialsIncomplete)
        hint = _MISSING.get(exc.field or "", _OTHER) if incomplete else exc.hint
        return await _refused(request, session, outbox, Problem(
            name, f"Nothing stored: {exc.message}.", hint))
    notice = (f"Credentials of {name} tried (the relay accepted the login) and stored; "
              f"{released} held message(s) released.")
    return notices.redirect("/ui/relays", notice, session)


@router.post("/relays/{name}/credentials/clear")
async def clear_credentials(name: str, session: Admin, outbox: Service) -> Response:
    status, had = await outbox.relays.clear_credentials(name)
    login = f"{status.auth} as {status.username}" if status.username else status.auth
    notice = (f"Stored credentials of {name} cleared; the config file's apply again "
              f"({login}); its held mail was released." if had else
              f"{name} has no stored credentials; the config file's already apply.")
    return notices.redirect("/ui/relays", notice, session)


async def _refused(request: Request, session: Session, outbox: Service,
                   problem: Problem) -> HTMLResponse:
    return await _page(request, session, outbox, code=422, problem=problem)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _clause(hint: str) -> str:
    """A hint as the clause after "Next step:" (some are a guidance entry's sentence)."""
    return hint[:1].lower() + hint[1:].rstrip(".")


@router.post("/relays/{name}/oauth")
async def start_oauth(request: Request, name: str, session: Admin, outbox: Service) -> Response:
    uri = redirect_uri(request)
    flow = await outbox.relays.oauth2_authorization(name, uri)
    now = time.monotonic()
    for state in [s for s, f in _FLOWS.items() if f.expires < now]:
        del _FLOWS[state]
    _FLOWS[flow.state] = Flow(name, flow.verifier, uri, session.user.name, now + FLOW_TTL)
    return RedirectResponse(flow.url, status_code=303)


@router.get("/oauth/callback", response_class=HTMLResponse)
async def oauth_callback(request: Request, outbox: Service,
                         code: Annotated[str, Query()] = "",
                         state: Annotated[str, Query()] = "",
                         error: Annotated[str, Query(max_length=200)] = "",
                         error_description: Annotated[str, Query(max_length=500)] = ""
                         ) -> Response:
    session = await current(request)
    flow = _FLOWS.pop(state, None) if state else None
    if error:
        return _provider_refused(request, session, error, error_description, flow)
    if flow is None or flow.expires < time.monotonic():
        return error_page(request, 400, "OAuth2 connection not completed",
                          "This answer does not belong to a connection started here, or it "
                          "came too late.", "start Connect with OAuth2 again", session)
    if session is None or session.user.name != flow.user or not session.can("admin"):
        return error_page(request, 403, "OAuth2 connection not completed", "Sign in as the "
                          "administrator who started the connection.", "", session)
    _, released = await outbox.relays.connect_oauth2(flow.relay, code, flow.verifier,
                                                     flow.redirect_uri)
    notice = (f"Relay {flow.relay} connected with OAuth2: refresh token stored; {released} "
              "held message(s) released.")
    return notices.redirect("/ui/relays", notice, session)


def _provider_refused(request: Request, session: Session | None, error: str, description: str,
                      flow: Flow | None) -> HTMLResponse:
    uri = flow.redirect_uri if flow else redirect_uri(request)
    if error == "redirect_uri_mismatch":
        message = (f"The provider refused the redirect URI (redirect_uri_mismatch): "
                   f"{description or 'it is not registered for this client'}.")
        hint = f"register exactly {uri} as a redirect URI of the OAuth2 client, then connect again"
    elif error in ("invalid_client", "unauthorized_client"):
        message = f"The provider refused the client ({error}): {description}."
        hint = "check the relay's oauth2 client_id (and client_secret) in the config"
    else:
        message = f"The provider refused the connection ({error}): {description}."
        hint = "check the relay's oauth2 settings and the consent, then connect again"
    return error_page(request, 400, "OAuth2 connection refused", message, hint, session)
