"""Streamed DATA: a body sent in chunks, dot-stuffed across chunk boundaries, sized
before MAIL, abandoned without its final "." when its content fails; and the MIME
writer streaming files from a blob source with their sha256 checked."""

from __future__ import annotations

import email
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from email import policy

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.smtpd import ScriptedServer

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.classify import classify
from outbox.core.content import AttachmentRef, MessageContent
from outbox.core.model import OutcomeKind, Scope
from outbox.core.report import Condition, Stage
from outbox.delivery.body import DotStuffer
from outbox.delivery.mime_writer import MimeWriter, PlannedBody
from outbox.delivery.smtp.data import dot_stuff
from outbox.delivery.smtp.session import open_session
from outbox.errors import BlobCorrupt, BodyUnavailable

ServerFactory = Callable[..., ScriptedServer]
RelayFactory = Callable[..., RelaySettings]
SENDER = "sender@x.test"


class ChunkedBody:
    """A `MessageBody` from given chunks; optionally failing after them."""

    def __init__(self, chunks: Sequence[bytes], fail: BodyUnavailable | None = None) -> None:
        self._chunks = list(chunks)
        self._fail = fail
        self.size = sum(map(len, chunks))
        self.eight_bit = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        for chunk in self._chunks:
            yield chunk
        if self._fail is not None:
            raise self._fail


class MemoryBlobs:
    """A blob source over a dict, read in small pieces to cross line boundaries."""

    def __init__(self, blobs: dict[str, bytes], piece: int = 1000) -> None:
        self.blobs = blobs
        self.piece = piece

    async def read(self, sha256: str, size: int) -> AsyncIterator[bytes]:
        if sha256 not in self.blobs:
            raise BlobCorrupt(f"blob {sha256[:16]} is missing")
        data = self.blobs[sha256]
        for start in range(0, len(data), self.piece):
            yield data[start:start + self.piece]

    async def check(self, sha256: str, size: int) -> None:
        if len(self.blobs.get(sha256, b"")) != size or sha256 not in self.blobs:
            raise BlobCorrupt(f"blob {sha256[:16]} is missing")


def content(*files: tuple[str, bytes]) -> MessageContent:
    return MessageContent(
        from_="a@x.test", to=("b@x.test",), subject="files", text=".dot\nhi",
        date="Wed, 01 May 2024 12:30:00 +0000",
        attachments=tuple(AttachmentRef(name, "application/octet-stream",
                                        hashlib.sha256(data).hexdigest(), len(data))
                          for name, data in files))


# --- dot-stuffing across chunks -------------------------------------------------------------

_LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a.b", b"From x", b"="]),
                  max_size=12)


@settings(max_examples=300, deadline=None)
@given(lines=_LINES, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_chunked_stuffing_equals_stuffing_the_whole(lines: list[bytes], cuts: list[int]) -> None:
    whole = b"".join(line + b"\r\n" for line in lines)
    points = sorted({min(cut, len(whole)) for cut in cuts})
    pieces = [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)], strict=True)]
    stuffer = DotStuffer()
    streamed = b"".join(stuffer.feed(piece) for piece in pieces) + stuffer.finish()
    assert streamed == dot_stuff(whole)


async def test_a_streamed_body_arrives_as_it_was(smtp_server: ServerFactory,
                                                 make_relay: RelayFactory,
                                                 delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    chunks = [b"Subject: dots\r\n\r\n", b".a\r", b"\n.b\r\n", b"..c\r\n.", b"\r\n", b"e\r\n"]
    session = await open_session(make_relay(server), delivery_settings)
    report = await session.send(SENDER, ["b@x.test"], ChunkedBody(chunks))
    await session.close()

    assert report.failure is None and report.data_sent
    assert f"<{sum(map(len, chunks))} bytes of message data>" in report.transcript
    [received] = server.messages
    assert received.data == b"".join(chunks)


async def test_the_size_check_uses_the_bodys_size(smtp_server: ServerFactory,
                                                  make_relay: RelayFactory,
                                                  delivery_settings: DeliverySettings) -> None:
    server = smtp_server(size_limit=2_000)
    session = await open_session(make_relay(server), delivery_settings)
    report = await session.send(SENDER, ["b@x.test"], ChunkedBody([b"x" * 2_999 + b"\r\n"]))
    await session.close()

    assert report.failure is not None
    assert (report.failure.stage, report.failure.condition) == (Stage.SIZE_CHECK,
                                                                Condition.MESSAGE_TOO_BIG)
    assert server.commands == ["EHLO", "QUIT"]


async def test_a_body_failing_mid_stream_never_sends_the_final_dot(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    problem = BodyUnavailable("blob abc no longer matches its sha256",
                              condition=Condition.ATTACHMENT_CORRUPT.value)
    body = ChunkedBody([b"Subject: x\r\n\r\n", b"A" * 76 + b"\r\n"] * 3_000, fail=problem)
    session = await open_session(make_relay(server), delivery_settings)
    report = await session.send(SENDER, ["b@x.test"], body)
    await session.close()

    assert report.failure is not None
    assert (report.failure.stage, report.failure.condition) == (Stage.DATA,
                                                                Condition.ATTACHMENT_CORRUPT)
    assert report.data_sent is False
    assert not session.is_usable
    assert server.messages == []  # hung up without the final ".": nothing accepted
    outcome = classify(report)["b@x.test"]
    assert (outcome.kind, outcome.scope, outcome.guidance) == (
        OutcomeKind.HELD, Scope.MESSAGE, "attachment_corrupt")


# --- the MIME writer ------------------------------------------------------------------------

async def collect(body: PlannedBody) -> bytes:
    return b"".join([chunk async for chunk in body.chunks()])


async def test_planned_bodies_stream_files_byte_identical(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    files = [("empty.bin", b""), ("one.bin", b"\x00"), ("lines.bin", bytes(range(256)) * 300)]
    blobs = MemoryBlobs({hashlib.sha256(d).hexdigest(): d for _, d in files}, piece=777)
    body = MimeWriter(blobs).body_for(content(*files), "<m1@x.test>")
    await body.check()
    written = await collect(body)
    assert len(written) == body.size

    server = smtp_server()
    session = await open_session(make_relay(server), delivery_settings)
    report = await session.send(SENDER, ["b@x.test"], body)
    await session.close()
    assert report.failure is None
    [received] = server.messages
    assert received.data == written
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    found = [(p.get_filename(), p.get_payload(decode=True)) for p in parsed.iter_attachments()]
    assert found == files


async def test_a_file_that_changed_is_refused_before_the_body_ends() -> None:
    original = bytes(range(256)) * 100
    tampered = original[:5000] + b"\xff" + original[5001:]
    blobs = MemoryBlobs({hashlib.sha256(original).hexdigest(): tampered})
    body = MimeWriter(blobs).body_for(content(("a.bin", original)), "<m1@x.test>")
    await body.check()  # same size: only the sha256 can tell
    seen: list[bytes] = []
    try:
        async for chunk in body.chunks():
            seen.append(chunk)
    except BodyUnavailable as exc:
        assert exc.condition == "attachment_corrupt"
        assert "sha256" in exc.message
    else:
        raise AssertionError("a changed file was streamed to the end")
    assert b"".join(seen).endswith(b"\r\n")  # the closing boundary was never written
    assert b"--=_ob_" not in b"".join(seen).rsplit(b"Content-Disposition", 1)[1]


async def test_a_missing_file_is_found_before_any_relay_is_contacted() -> None:
    body = MimeWriter(MemoryBlobs({})).body_for(content(("a.bin", b"data")), "<m1@x.test>")
    try:
        await body.check()
    except BodyUnavailable as exc:
        assert exc.condition == "attachment_corrupt"
    else:
        raise AssertionError("a missing file passed the check")
