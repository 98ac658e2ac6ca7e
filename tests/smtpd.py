"""A real SMTP server for tests, with scripted replies (STYLE principle 7).

`ScriptedServer` is aiosmtpd on a free loopback port in its own thread. It
records what it accepted (envelope, raw bytes, Message-ID, duplicates per
Message-ID) and every command of every connection, and replies as the test's
script says:

    server = ScriptedServer(script=[
        reply("DATA", "451 4.3.0 Try again later", times=2),   # then normal
        reply("RCPT", "550 5.1.1 No such user", recipient="b@x.test"),
        drop("DATA", times=1),            # hang up after the final dot, no reply
        drop_mid_data(),                  # hang up while the body is coming in
        stall_after_354(),                # answer DATA with 354, then read nothing more
        delay("MAIL", 2.0),               # sleep before replying
        reply("GREETING", "421 4.3.2 Too busy"),
    ]).start()
    server.set_script()                   # behave normally from now on

Commands in a script: GREETING, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA_START
(the reply to the DATA command itself), DATA (the reply after the final dot),
RSET, NOOP, QUIT. The first matching rule with uses left applies.

`TlsCerts` makes a private CA with trustme and server certificates that are
good, expired, for the wrong host, self-signed, or from an unknown CA.
`closed_port()` gives a loopback port where nothing listens.

Run as a process it is a fast plain sink for benchmarks and crash tests:

    python tests/smtpd.py --port 2525 --count-file counts.json

It accepts everything, counts messages and distinct Message-IDs, and writes the
counters as JSON to the count file every half second and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SERVER_NAME = "smtp.test"
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


# --- scripts ----------------------------------------------------------------------

Action = Literal["reply", "drop", "drop_mid_data", "stall_after_354"]


@dataclass
class Rule:
    """One scripted behaviour; `times=None` means every time."""

    command: str
    reply: str | None = None
    action: Action = "reply"
    delay: float = 0.0
    recipient: str | None = None
    times: int | None = None
    keep_message: bool = True
    after_bytes: int = 64 * 1024
    used: int = 0

    def matches(self, command: str, recipient: str | None) -> bool:
        if self.command != command or (self.times is not None and self.used >= self.times):
            return False
        return self.recipient is None or (recipient or "").lower() == self.recipient.lower()


def reply(command: str, text: str, *, recipient: str | None = None, times: int | None = None,
          delay: float = 0.0) -> Rule:
    """Answer `command` (for RCPT: optionally only this recipient) with `text`."""
    return Rule(command.upper(), reply=text, recipient=recipient, times=times, delay=delay)


def drop(command: str = "DATA", *, times: int | None = None, keep_message: bool = True,
         delay: float = 0.0) -> Rule:
    """Hang up instead of replying. For DATA that is after the final dot; the
    message counts as received unless `keep_message=False`."""
    return Rule(command.upper(), action="drop", times=times, keep_message=keep_message,
                delay=delay)


def drop_mid_data(*, after_bytes: int = 64 * 1024, times: int | None = None) -> Rule:
    """Send 354, read about `after_bytes` of the body, then hang up."""
    return Rule("DATA_START", action="drop_mid_data", after_bytes=after_bytes, times=times)


def stall_after_354(*, times: int | None = None) -> Rule:
    """Send 354 to the DATA command, then stop reading the socket and keep the
    connection open: the client's body fills the buffers and stays there."""
    return Rule("DATA_START", action="stall_after_354", times=times)


def delay(command: str, seconds: float, *, times: int | None = None) -> Rule:
    """Sleep before the normal reply to `command`."""
    return Rule(command.upper(), delay=seconds, times=times)


# --- what the server saw --------------------------------------------------------------

@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    connection: int  # index into `ScriptedServer.connections`


@dataclass(eq=False)
class ConnectionLog:
    """One client connection: the command verbs in order, TLS, AUTH identity."""

    commands: list[str] = field(default_factory=list)
    # per command: had the client already sent more (pipelined) when it was taken up?
    more_waiting: list[bool] = field(default_factory=list)
    tls: bool = False
    authenticated_as: str | None = None


def message_id_of(data: bytes) -> str | None:
    end = data.find(b"\r\n\r\n")
    match = _MESSAGE_ID.search(data if end < 0 else data[:end])
    return match.group(1).strip().decode("ascii", "replace") if match else None


class RecordingHandler:
    """aiosmtpd handler: applies the script to MAIL, RCPT and DATA, records
    accepted messages, and checks AUTH credentials. Subclass it to add a
    mechanism: aiosmtpd picks up `auth_<MECHANISM>(self, server, args)`."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.pipelining = False
        self.messages: list[ReceivedMessage] = []
        self.message_ids: Counter[str] = Counter()
        self.bodies = 0  # message bodies received whole, counted before any scripted delay
        self.connections: list[ConnectionLog] = []
        self.open_now = 0  # connections that sent a command and are still open
        self.most_open = 0  # the most there were at once
        self._script: list[Rule] = []
        self._lock = threading.Lock()

    def count_open(self, change: int) -> None:
        with self._lock:
            self.open_now += change
            self.most_open = max(self.most_open, self.open_now)

    def set_script(self, rules: Iterable[Rule]) -> None:
        with self._lock:
            self._script = list(rules)

    def take_rule(self, command: str, recipient: str | None = None) -> Rule | None:
        with self._lock:
            for rule in self._script:
                if rule.matches(command, recipient):
                    rule.used += 1
                    return rule
        return None

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.credentials is None:
            responses = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        if self.pipelining:  # aiosmtpd reads pipelined commands in order; it just never says so
            responses = [responses[0], "250-PIPELINING", *responses[1:]]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        status = await _perform(server, self.take_rule("MAIL"))
        if status is None or status.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return status or "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        status = await _perform(server, self.take_rule("RCPT", address))
        if status is None or status.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return status or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.bodies += 1
        rule = self.take_rule("DATA")
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        status = rule.reply if rule is not None else None
        dropping = rule is not None and rule.action == "drop"
        keep = rule is None or rule.action != "drop" or rule.keep_message
        if (status is None or status.startswith("2")) and keep:
            self._accept(server, envelope)
        if dropping:
            await _hang_up(server)
        return status or "250 2.0.0 OK: queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        if auth_data.login == user.encode() and auth_data.password == password.encode():
            _connection_log(server).authenticated_as = user
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _accept(self, server: SMTP, envelope: Envelope) -> None:
        data = envelope.original_content or b""
        message_id = message_id_of(data)
        log = _connection_log(server)
        self.messages.append(ReceivedMessage(
            mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos), data=data,
            message_id=message_id, connection=self.connections.index(log)))
        if message_id is not None:
            self.message_ids[message_id] += 1


async def _perform(server: SMTP, rule: Rule | None) -> str | None:
    """Apply a rule: sleep, hang up, or return its reply (None: reply normally)."""
    if rule is None:
        return None
    if rule.delay:
        await asyncio.sleep(rule.delay)
    if rule.action == "drop":
        await _hang_up(server)
    return rule.reply


async def _hang_up(server: SMTP) -> None:
    """Close without a word; aiosmtpd cancels the handler when the loss arrives."""
    if isinstance(server.transport, asyncio.Transport):
        server.transport.abort()
    await asyncio.sleep(3600)


def _connection_log(server: SMTP) -> ConnectionLog:
    assert isinstance(server, ScriptedSMTP)
    return server.connection_log()


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP with a recorded, scriptable command loop."""

    _HOOKED = frozenset({"MAIL", "RCPT"})  # scripted in the handler hooks
    _RULE_NAMES = {"DATA": "DATA_START"}

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = handler
        self._log: ConnectionLog | None = None
        self._smtp_methods = {verb: self._scripted(verb, method)
                              for verb, method in self._smtp_methods.items()}

    def connection_log(self) -> ConnectionLog:
        if self._log is None:
            self._log = ConnectionLog()
            self.recorder.connections.append(self._log)
            self.recorder.count_open(+1)
        return self._log

    def connection_lost(self, error: Exception | None) -> None:
        if self._log is not None:
            self.recorder.count_open(-1)
        super().connection_lost(error)

    def _scripted(self, verb: str, method: Callable[[str], Awaitable[None]]) -> Callable[
            [str], Awaitable[None]]:
        async def run(arg: str) -> None:
            log = self.connection_log()
            log.commands.append(verb)
            log.more_waiting.append(bool(self._reader._buffer))  # type: ignore[attr-defined]
            log.tls = log.tls or self._is_tls()
            rule = None
            if verb not in self._HOOKED:
                rule = self.recorder.take_rule(self._RULE_NAMES.get(verb, verb))
            if rule is not None and rule.action == "drop_mid_data":
                return await self._drop_mid_data(rule)
            if rule is not None and rule.action == "stall_after_354":
                return await self._stall_after_354()
            status = await _perform(self, rule)
            if status is None:
                return await method(arg)
            await self.push(status)
        return run

    def _is_tls(self) -> bool:
        return self.transport is not None and (
            self.transport.get_extra_info("sslcontext") is not None)

    async def _handle_client(self) -> None:
        rule = self.recorder.take_rule("GREETING")
        status = await _perform(self, rule)
        if status is not None:
            await self.push(status)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def _drop_mid_data(self, rule: Rule) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = 0
        while received < rule.after_bytes:
            chunk = await self._reader.read(rule.after_bytes - received)
            if not chunk:
                break
            received += len(chunk)
        await _hang_up(self)


    async def _stall_after_354(self) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        if isinstance(self.transport, asyncio.Transport):
            self.transport.pause_reading()
        await asyncio.sleep(3600)  # until the server stops; the client must give up first


class _Controller(Controller):
    """A Controller that listens on port 0 (a free port the OS picks)."""

    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


# --- the server -----------------------------------------------------------------------

TlsMode = Literal["starttls", "implicit"]


class ScriptedServer:
    """A scripted aiosmtpd server on a free port. Use `with` or start()/stop().

    auth: (username, password) to accept with PLAIN/LOGIN (`auth_mechanisms`
    limits what EHLO offers); without it EHLO offers no AUTH.
    tls: "starttls" or "implicit" with `tls_context` (see `TlsCerts`).
    size_limit: advertise `SIZE n` and refuse bigger messages.
    port: 0 for any free port, or a given one (e.g. one that was refusing before).
    pipelining: offer PIPELINING in EHLO (aiosmtpd handles it; it does not offer it).
    """

    def __init__(self, *, script: Iterable[Rule] = (), auth: tuple[str, str] | None = None,
                 auth_mechanisms: Iterable[str] = ("PLAIN", "LOGIN"),
                 auth_require_tls: bool = False, tls: TlsMode | None = None,
                 tls_context: ssl.SSLContext | None = None, require_starttls: bool = False,
                 size_limit: int | None = None, smtputf8: bool = True, host: str = "127.0.0.1",
                 port: int = 0, handler: RecordingHandler | None = None,
                 pipelining: bool = False) -> None:
        if tls is not None and tls_context is None:
            raise ValueError("tls needs a tls_context (TlsCerts.server_context())")
        self.host = host
        self.tls = tls
        self.handler = handler or RecordingHandler(auth)
        self.handler.credentials = auth
        self.handler.pipelining = pipelining
        self._initial_script = list(script)
        mechanisms = {m.upper() for m in auth_mechanisms}
        options: dict[str, Any] = dict(
            hostname=host, port=port, server_hostname=SERVER_NAME, data_size_limit=size_limit,
            enable_SMTPUTF8=smtputf8, authenticator=self.handler.authenticate,
            auth_require_tls=auth_require_tls and tls == "starttls",
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in mechanisms])
        if tls == "starttls":
            options.update(tls_context=tls_context, require_starttls=require_starttls)
        elif tls == "implicit":
            options.update(ssl_context=tls_context)
        self._controller = _Controller(self.handler, **options)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    @property
    def message_ids(self) -> Counter[str]:
        return self.handler.message_ids

    @property
    def most_open(self) -> int:
        """The most connections open at once (counted from their first command)."""
        return self.handler.most_open

    @property
    def connections(self) -> list[ConnectionLog]:
        """Connections that sent at least one command (not the start-up probe)."""
        return self.handler.connections

    @property
    def commands(self) -> list[str]:
        """Every command verb received, over all connections, in order."""
        return [verb for log in self.connections for verb in log.commands]

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.message_ids.values())

    def set_script(self, *rules: Rule) -> None:
        """Replace the script while running; no rules: behave normally."""
        self.handler.set_script(rules)

    def start(self) -> ScriptedServer:
        self._controller.start()
        self.set_script(*self._initial_script)  # after the controller's start-up probe
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- certificates -----------------------------------------------------------------------

CertKind = Literal["good", "expired", "wrong_host", "self_signed", "unknown_ca"]
_LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


class TlsCerts:
    """A private CA (trustme) and server contexts; `ca_file` is the CA in PEM,
    for a relay's `ca_file`."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self._trustme = trustme
        self.directory = directory
        self.ca = trustme.CA()
        self.ca_file = str(directory / "outbox-test-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._contexts: dict[str, ssl.SSLContext] = {}

    def server_context(self, kind: CertKind = "good", *,
                       names: Iterable[str] = _LOCAL_NAMES) -> ssl.SSLContext:
        key = f"{kind}:{','.join(names)}"
        if key not in self._contexts:
            self._contexts[key] = self._build(kind, tuple(names))
        return self._contexts[key]

    def _build(self, kind: CertKind, names: tuple[str, ...]) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if kind == "self_signed":
            stranger = self._trustme.CA()
            pem = self.directory / "self-signed.pem"
            pem.write_bytes(stranger.private_key_pem.bytes() + stranger.cert_pem.bytes())
            context.load_cert_chain(str(pem))
            return context
        issuer = self._trustme.CA() if kind == "unknown_ca" else self.ca
        if kind == "wrong_host":
            names = ("smtp.elsewhere.test",)
        now = dt.datetime.now(dt.UTC)
        expired = kind == "expired"
        issuer.issue_cert(*names, not_before=now - dt.timedelta(days=30) if expired else None,
                          not_after=now - dt.timedelta(days=1) if expired else None,
                          ).configure_cert(context)
        return context


# --- the fast sink (standalone process) -------------------------------------------------

class SinkStats:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.connections = 0
        self.duplicates = 0
        self.message_ids: set[str] = set()

    def record(self, data: bytes) -> None:
        self.messages += 1
        self.bytes += len(data)
        message_id = message_id_of(data)
        if message_id is None:
            return
        if message_id in self.message_ids:
            self.duplicates += 1
        else:
            self.message_ids.add(message_id)

    def as_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "distinct_message_ids": len(self.message_ids),
                "duplicates": self.duplicates, "connections": self.connections,
                "bytes": self.bytes}


_SINK_EHLO = (b"250-" + SERVER_NAME.encode() + b"\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
              b"250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n")
_SINK_REPLIES = {
    b"HELO": b"250 " + SERVER_NAME.encode() + b"\r\n", b"EHLO": _SINK_EHLO,
    b"MAIL": b"250 2.1.0 OK\r\n", b"RCPT": b"250 2.1.5 OK\r\n", b"RSET": b"250 2.0.0 OK\r\n",
    b"NOOP": b"250 2.0.0 OK\r\n", b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
}


class SinkProtocol(asyncio.Protocol):
    """Accepts every message as fast as asyncio allows; pipelining-safe."""

    def __init__(self, stats: SinkStats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.in_data = False
        self.scan_from = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        transport.write(b"220 " + SERVER_NAME.encode() + b" ESMTP outbox test sink\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        while self._step(replies):
            pass
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))
            if replies[-1].startswith(b"221"):
                self.transport.close()

    def _step(self, replies: list[bytes]) -> bool:
        if self.in_data:
            return self._take_message(replies)
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return False
        verb = bytes(self.buffer[:4]).upper()
        del self.buffer[:end + 2]
        replies.append(_SINK_REPLIES.get(verb, b"502 5.5.2 Command not recognized\r\n"))
        self.in_data = verb == b"DATA"
        return verb != b"QUIT"

    def _take_message(self, replies: list[bytes]) -> bool:
        """The body ends at CRLF "." CRLF (or is empty: "." CRLF right away)."""
        if self.buffer.startswith(b".\r\n"):
            body_end, consumed = 0, 3
        else:
            found = self.buffer.find(b"\r\n.\r\n", self.scan_from)
            if found < 0:
                self.scan_from = max(len(self.buffer) - 4, 0)
                return False
            body_end, consumed = found + 2, found + 5
        self.stats.record(bytes(self.buffer[:body_end]))
        del self.buffer[:consumed]
        self.in_data, self.scan_from = False, 0
        replies.append(b"250 2.0.0 OK: queued\r\n")
        return True


def write_counts(stats: SinkStats, path: str) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(stats.as_dict(), handle)
    os.replace(temporary, path)


async def _write_counts_periodically(stats: SinkStats, path: str) -> None:
    while True:
        write_counts(stats, path)
        await asyncio.sleep(0.5)


async def serve_sink(host: str, port: int, count_file: str | None) -> None:
    stats = SinkStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(stats), host, port,
                                      reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    writer = asyncio.create_task(_write_counts_periodically(stats, count_file)) \
        if count_file else None
    print(f"listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    if writer is not None:
        writer.cancel()
    if count_file:
        write_counts(stats, count_file)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fast SMTP sink that counts messages.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--count-file", help="JSON counters, rewritten every 0.5 s and at exit")
    args = parser.parse_args(argv)
    asyncio.run(serve_sink(args.host, args.port, args.count_file))


if __name__ == "__main__":
    main()
