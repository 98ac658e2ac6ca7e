"""`outbox queue retry` on mail whose relay is backing off says when it goes."""

from __future__ import annotations

from tests.e2e.conftest import Starter
from tests.processes import wait_until
from tests.smtpd import closed_port


def test_cli_retry_while_the_relay_backs_off_says_when_it_goes(start_outbox: Starter) -> None:
    """It said only '<id> queued', and the message was deferred again at once: the relay,
    down, is backing off (a stranger pass, in the UI's 'Queued for another try now.')."""
    outbox = start_outbox([{"name": "default", "host": "127.0.0.1", "port": closed_port(),
                            "security": "none"}])
    with outbox.client() as client:
        id = client.post("/v1/messages", json={"from": "shop@example.test",
                                               "to": "jo@example.test", "text": "hi"}).json()["id"]

        def status() -> str:
            return str(client.get(f"/v1/messages/{id}").json()["status"])

        wait_until(lambda: status() == "deferred", timeout=30, message="deferred")
    retried = outbox.cli("queue", "retry", id)

    assert retried.returncode == 0, retried.stderr
    first, *rest = retried.stdout.strip().splitlines()
    assert first == f"{id} queued"
    assert rest and rest[0].startswith("relay default: backing off until ")
    assert rest[0].endswith("Connection refused; it goes when that ends")
