"""The web UI's Retry stored just before PostgreSQL went says so: queued for another try,
and only whether a relay's back-off holds the message could not be checked. It read the
relays' back-offs after the retry and answered the lost database with the outage page,
"nothing was done", so an operator would retry again (left by cc03c45, the API's fix).
The answer is a page of its own: the message's page, where the usual redirect goes,
needs the database. Cancel reads nothing after its change: it redirects as always.

A real `outbox serve` on a PostgreSQL cluster of the test's own, reached through a relay
that stops passing statements the moment the change has committed (tests/pgfreeze.py);
the cluster is then really stopped. The forms are posted as the browser posts them, with
the signed-in session's cookie and CSRF token."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.support import relay_for
from tests.pgcluster import PgCluster
from tests.pgfreeze import (
    INTERNAL_DOMAINS,
    FreezeAfterCommit,
    fails_once,
    freezable_cluster,
    one_held_one_failed,
    relayed,
    status,
    while_the_database_goes,
)
from tests.processes import OutboxProcess, base_config, wait_until
from tests.smtpd import ScriptedServer
from tests.ui.support import PASSWORD, add_users, api_keys

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with freezable_cluster() as cluster:
        yield cluster


def _sign_in(browser: httpx.Client) -> None:
    form = browser.get("/ui/login")
    token = TOKEN.search(form.text)
    assert token is not None, form.text
    signed = browser.post("/ui/login", data={"name": "admin", "password": PASSWORD,
                                             "csrf_token": token.group(1)})
    assert signed.status_code == 303, signed.text


def _form_token(browser: httpx.Client, id: str) -> str:
    shown = browser.get(f"/ui/messages/{id}")
    token = TOKEN.search(shown.text)
    assert shown.status_code == 200 and token is not None, shown.text
    return token.group(1)


def test_a_ui_retry_stored_before_postgresql_stopped_says_it_is_queued(
        tmp_path: Path, own_cluster: PgCluster, launch: Any) -> None:
    url = own_cluster.create_database("outbox")
    with (ScriptedServer(script=[fails_once()]) as sink,
          FreezeAfterCommit(own_cluster.port) as relay):
        config = base_config(tmp_path, relayed(url, own_cluster, relay), [relay_for(sink)],
                             internal_domains=INTERNAL_DOMAINS, auth=api_keys(),
                             secrets={"key_file": str(tmp_path / "secret.key")})
        outbox: OutboxProcess = launch(config)
        add_users(config)
        with (outbox.client() as api,
              httpx.Client(base_url=outbox.base_url, timeout=90) as browser):
            _sign_in(browser)
            held, failed = one_held_one_failed(api)

            token = _form_token(browser, held)
            cancelled, shown = while_the_database_goes(
                own_cluster, relay, b"cancelled", lambda: _and_follow(browser, browser.post(
                    f"/ui/messages/{held}/cancel", data={"csrf_token": token})))
            assert cancelled.status_code == 303, cancelled.text
            assert parse_qs(urlsplit(cancelled.headers["location"]).query)["notice"] == [
                "Cancelled: it will not be sent."]
            # The page the cancel leads to cannot be shown yet; it must not read as the
            # cancel undone ("nothing was done" was the answer to any request).
            assert shown.status_code == 503, shown.text
            assert "this page cannot be shown" in shown.text
            assert "nothing was done" not in shown.text
            wait_until(lambda: status(api, held) is not None, timeout=60, interval=0.5,
                       message="PostgreSQL back")
            assert status(api, held) == "cancelled"

            token = _form_token(browser, failed)
            retried = while_the_database_goes(own_cluster, relay, b"retry requested", lambda: (
                browser.post(f"/ui/messages/{failed}/retry", data={"csrf_token": token})))
            assert retried.status_code == 200, retried.text
            notice = re.search(r'<p class="ok" role="status" id="notice">([^<]+)</p>',
                               retried.text)
            assert notice is not None, retried.text
            assert html.unescape(notice.group(1)) == (
                "Queued for another try. Whether a relay's back-off holds it back could not "
                "be checked: Outbox cannot reach its database just now; open Relays in a "
                "minute to see.")
            assert f'href="/ui/messages/{failed}"' in retried.text  # the way back to it
            # It was stored: the retry goes out once PostgreSQL is back (the 550 was once).
            wait_until(lambda: status(api, failed) == "sent", timeout=60, interval=0.5,
                       message="the retried message sent")
    assert [m.rcpt_tos for m in sink.messages] == [("gone@example.test",)]


def _and_follow(browser: httpx.Client, answer: httpx.Response
                ) -> tuple[httpx.Response, httpx.Response]:
    """`answer`, and the page its redirect leads to, fetched while PostgreSQL is down."""
    return answer, browser.get(answer.headers["location"])
