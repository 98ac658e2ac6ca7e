"""`SessionError`, and the one place foreign exceptions are translated.

Every aiosmtplib, socket, ssl and timeout error raised while a session talks
to a relay passes through `map_smtp_errors` and comes out as a `SessionError`
carrying a `SessionFailure`: the stage the session was in, and either the
relay's reply or a `Condition` found along the exception's cause chain. No
other module turns a foreign exception into a failure (STYLE principle 3).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiosmtplib

from outbox.core.replies import parse_reply
from outbox.core.report import Condition, SessionFailure, Stage
from outbox.delivery import tls
from outbox.delivery.oauth import TokenError
from outbox.errors import BodyUnavailable, DeliveryError

_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


class SessionError(DeliveryError):
    """The SMTP session failed."""

    code = "smtp_session_failed"

    def __init__(self, failure: SessionFailure, transcript: str = "") -> None:
        what = failure.reply or failure.condition or "failed"
        super().__init__(f"{failure.stage.value}: {what}")
        self.failure = failure
        self.transcript = transcript


@contextmanager
def map_smtp_errors(stage: Callable[[], Stage]) -> Iterator[None]:
    """Turn aiosmtplib, socket, ssl and timeout errors into `SessionError`;
    `stage()` says where the session was when it happened."""
    try:
        yield
    except SessionError:
        raise
    except TokenError as exc:  # no access token for XOAUTH2: the endpoint's word, no reply
        raise SessionError(SessionFailure(stage(), condition=exc.condition,
                                          detail=exc.message)) from exc
    except BodyUnavailable as exc:  # the message's own content failed us, not the relay
        raise SessionError(SessionFailure(stage(), condition=Condition(exc.condition),
                                          detail=exc.message)) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise SessionError(failure_for(exc, stage())) from exc


def failure_for(exc: BaseException, stage: Stage) -> SessionFailure:
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError) or _no_greeting(exc):
        stage = Stage.GREETING
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return SessionFailure(stage, reply=parse_reply(exc.code, exc.message))
    return SessionFailure(stage, condition=condition_for(exc, stage), detail=_describe(exc))


def _no_greeting(exc: BaseException) -> bool:
    """Connected, but the greeting never came: not the firewall a connect timeout hints at."""
    return (isinstance(exc, aiosmtplib.SMTPConnectTimeoutError)
            and "server ready" in str(exc))


def condition_for(exc: BaseException, stage: Stage) -> Condition:
    """The most specific condition found along the exception's cause chain."""
    for link in _causes(exc):
        condition = _link_condition(link, stage)
        if condition is not None:
            return condition
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return Condition.CONNECTION_REFUSED
    return Condition.PROTOCOL_ERROR


def _link_condition(link: BaseException, stage: Stage) -> Condition | None:
    if isinstance(link, ssl.SSLError):
        return tls.condition_for(link)
    if isinstance(link, socket.gaierror):
        return Condition.DNS_FAILURE
    if isinstance(link, ConnectionRefusedError):
        return Condition.CONNECTION_REFUSED
    if isinstance(link, TimeoutError):
        connecting = stage is Stage.CONNECT or isinstance(link, aiosmtplib.SMTPConnectError)
        return Condition.CONNECTION_TIMEOUT if connecting else Condition.COMMAND_TIMEOUT
    if type(link) is aiosmtplib.SMTPConnectError:
        return None  # a wrapper: the cause says what happened
    if isinstance(link, ConnectionError | asyncio.IncompleteReadError):
        return Condition.CONNECTION_DROPPED
    if isinstance(link, OSError) and link.errno in _UNREACHABLE:
        return Condition.NETWORK_UNREACHABLE
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _describe(exc: BaseException) -> str:
    for link in _causes(exc):
        if isinstance(link, ssl.SSLError):
            return tls.describe(link)
    return str(exc) or type(exc).__name__
