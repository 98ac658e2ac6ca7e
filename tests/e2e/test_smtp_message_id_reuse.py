"""A Message-ID used again over SMTP (found by a stranger: lost mail). The same
message again is a replay (250, not queued again); another message under the same
Message-ID and envelope was answered 250 "sent before" and dropped. It is refused,
as the API refuses it (422 message_id_reused), with a permanent 5xx. A real
`outbox serve` per backend, smtplib as the client, the relay a real aiosmtpd sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.submission import Served, queued, raw_message, serve_submission

VISIBLE = "ann@example.test"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_submission(request.param, tmp_path_factory.mktemp("reuse")) as served:
        yield served


def send(served: Served, raw: bytes) -> tuple[int, str]:
    with served.smtp() as client:
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        code, reply = client.data(raw)
    return code, reply.decode()


def queued_under(served: Served, message_id: str) -> list[str]:
    with served.outbox.client() as api:
        page = api.get("/v1/messages", params={"limit": 500}).json()
    return [m["id"] for m in page["messages"] if m["message_id"] == message_id]


def test_the_same_message_again_is_a_replay_and_another_is_refused(served: Served) -> None:
    first, message_id = raw_message(to=VISIBLE, body="The first message.\n")
    code, reply = send(served, first)
    assert code == 250, reply
    id = queued(reply)[0]

    code, again = send(served, first)  # a client that lost the 250 sends it again
    assert (code, queued(again)[0]) == (250, id)
    assert "not queued again" in again

    other, _ = raw_message(to=VISIBLE, message_id=message_id, body="Another message.\n")
    code, refused = send(served, other)
    assert (code, refused) == (554, (
        f"5.6.0 Message-ID {message_id} was already given by this API key to another "
        "message (other recipients or content); give the new message its own Message-ID "
        "(or none: Outbox makes one)"))

    assert queued_under(served, message_id) == [id]
    assert served.final(id)["status"] == "sent"
    (received,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert b"The first message." in received.data
