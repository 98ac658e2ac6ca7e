"""`kill -9` of a delivering process, at the production defaults (issue 10).

SPEC §3: "`kill -9` of any outbox process at any moment loses no accepted message;
after restart every accepted message reaches a final status, and mail that was in
flight in the dead process is back in the queue within 10 s of the restart (with the
default lease), not after its lease." And: "The number of duplicates a relay can see
is never more than the number of `uncertain` events."

Every test here keeps `[delivery] lease` (5 minutes) and `sweep_interval` at their
defaults unless it says why not. The queue is read with SQL while no process runs.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dbsql import sql
from tests.e2e.support import (
    attempts,
    claims,
    events,
    fill_queue,
    get_message,
    recovered,
    relay_for,
    statuses,
    submit_many,
    wait_all_sent,
)
from tests.processes import OutboxProcess, base_config, free_port, wait_until
from tests.smtpd import ScriptedServer, delay

RECOVERY_BOUND = 10.0  # seconds from the restart: SPEC §3
DEFAULT_MAX_ATTEMPTS = 20  # [retry] max_attempts default


def sent_by_the_claim(url: str, in_flight: dict[str, tuple[str, str]]) -> set[str]:
    """Of the messages claimed at the kill, those with a `sent` event for the attempt that
    claim made (the claim's own record), not for a later one."""
    claimed = {(id, attempt) for id, attempt, detail in sql(
        url, "SELECT message_id, attempt, detail FROM events WHERE type = 'claimed'")
        if id in in_flight and detail == f"claimed by {in_flight[id][0]}"}
    return {id for id, attempt in sql(
        url, "SELECT message_id, attempt FROM events WHERE type = 'sent'")
        if (id, attempt) in claimed}


def _wait_recovered(url: str, in_flight: dict[str, tuple[str, str]],
                    restarted: OutboxProcess) -> float:
    """Seconds from the restart until every in-flight message is out of the dead
    process's claim; fails (listing what is stuck) at three times the bound."""
    while True:
        stuck = set(in_flight) - recovered(url, in_flight)
        elapsed = time.monotonic() - restarted.started_at
        if not stuck:
            return elapsed
        if elapsed > RECOVERY_BOUND * 3:
            raise AssertionError(
                f"{len(stuck)} of {len(in_flight)} messages in flight at the kill are still "
                f"in `sending` under the dead owner {elapsed:.0f}s after the restart: "
                f"{sorted(stuck)[:5]}")
        time.sleep(0.1)


@pytest.mark.long(19)
@pytest.mark.parametrize("processes", [0, "auto"])  # auto, the default: a delivery process
def test_kill_9_mid_delivery_requeues_in_flight_mail_within_10s_at_the_default_lease(
        start_outbox: Any, database_url: str, processes: int | str) -> None:
    total = 500
    # Each DATA reply takes 50 ms: with the default 4 connections and 16 deliveries per
    # process, a dozen or more messages are claimed when the kill lands.
    with ScriptedServer(script=[delay("DATA", 0.05)]) as sink:
        relay = relay_for(sink)
        outbox: OutboxProcess = start_outbox([relay], delivery={"processes": processes})
        submitted = submit_many(outbox, total)
        wait_until(lambda: len(sink.messages) >= 100, timeout=60, message="100 deliveries")
        outbox.kill()
        at_kill = len(sink.messages)
        in_flight = claims(database_url)
        assert at_kill < total, "the kill should land while deliveries are still going on"
        assert len(in_flight) >= 2, f"several deliveries should be in flight: {in_flight}"
        dead_owners = {owner for owner, _ in in_flight.values()}

        # A real exec: the 10 s promise counts the restart's own start-up.
        restarted = start_outbox([relay], config=outbox.config, wait=False, forked=False)
        requeued_in = _wait_recovered(database_url, in_flight, restarted)
        restarted.wait_healthy()
        wait_all_sent(database_url, total, timeout=180)
        uncertain = events(database_url, "uncertain")
        print(f"\nkill -9 after {at_kill} of {total} deliveries, {len(in_flight)} in flight: "
              f"requeued {requeued_in:.1f}s after the restart (lease 5 min); all sent; "
              f"{sink.duplicates} duplicates, {len(uncertain)} uncertain events")
        assert requeued_in <= RECOVERY_BOUND, (
            f"in-flight mail came back {requeued_in:.1f}s after the restart")
        assert set(sink.message_ids) == set(submitted.values())
        assert sink.duplicates <= len(uncertain)
        # Each message that was in flight got its uncertain event, naming the dead owner,
        # unless the dead process's own record of that attempt made it to disk after the
        # snapshot above (in CI, at `auto` on SQLite, one of 16 came back `sent` with no
        # uncertain event; a likely way: SIGKILL waits for an fsync to end, and SQLite
        # replays a WAL transaction whose commit frame was written).
        details = {id: detail for id, detail in uncertain}
        finished = sent_by_the_claim(database_url, in_flight)
        for id in in_flight:
            assert id in details or id in finished, (
                f"{id} was in flight at the kill but has no uncertain event")
        unnamed = {id: details[id] for id in in_flight if id in details
                   and not any(owner in details[id] for owner in dead_owners)}
        assert not unnamed, f"uncertain events that do not name the dead owner: {unnamed}"


@pytest.mark.long(35)
def test_twenty_kills_at_random_moments_lose_nothing(start_outbox: Any, tmp_path: Path,
                                                     database_url: str) -> None:
    total = 1000
    seed = int(os.environ.get("OUTBOX_KILL_SEED", time.time_ns() % 1_000_000))
    print(f"\nkill loop seed: {seed} (OUTBOX_KILL_SEED={seed} repeats it)")
    rng = random.Random(seed)
    # DATA replies take 60 ms: about 60 messages/s over 4 connections, so the 20 runs
    # between kills deliver part of the queue and the last run the rest.
    with ScriptedServer(script=[delay("DATA", 0.06)]) as sink:
        relay = relay_for(sink)
        # max_attempts at its production default (the e2e config lowers it to 5).
        config = base_config(tmp_path, database_url, [relay],
                             retry={"max_attempts": DEFAULT_MAX_ATTEMPTS})
        submitted = fill_queue(config, total)
        moments: list[str] = []
        for _ in range(20):
            outbox: OutboxProcess = start_outbox([relay], config=config, wait=False)
            if rng.random() < 0.25:  # during start-up: migrations, liveness, recovery
                pause = rng.uniform(0.0, 1.5)
                time.sleep(pause)
                moment = f"start+{pause:.1f}s"
            else:  # while delivering
                outbox.wait_healthy()
                pause = rng.uniform(0.0, 1.5)
                time.sleep(pause)
                moment = f"ready+{pause:.1f}s"
            outbox.kill()
            moments.append(f"{moment}:{len(sink.messages)}")
        print(f"kills (moment:deliveries so far): {' '.join(moments)}")
        during = len(sink.messages)
        sink.set_script()  # the last run drains the rest at full speed
        start_outbox([relay], config=config)
        wait_all_sent(database_url, total, timeout=240, what=f"(seed {seed})")
        uncertain = events(database_url, "uncertain")
        tries = attempts(database_url)
        per_message = {id: sum(1 for m, _ in uncertain if m == id) for id in tries}
        print(f"20 kills: all {total} sent, {sink.duplicates} duplicates, {len(uncertain)} "
              f"uncertain events, at most {max(tries.values())} attempts for one message")
        assert 100 <= during < total, "the kills should land while mail is being delivered"
        assert set(sink.message_ids) == set(submitted.values()), f"seed {seed}"
        assert sink.duplicates <= len(uncertain), f"seed {seed}"
        assert max(tries.values()) <= DEFAULT_MAX_ATTEMPTS, f"seed {seed}"
        # Every recovery counted its attempt: the sent try plus one per uncertain event.
        undercounted = {id: (tries[id], per_message[id]) for id in tries
                        if tries[id] < 1 + per_message[id]}
        assert not undercounted, f"seed {seed}: attempts < 1 + uncertain events: {undercounted}"


@pytest.mark.parametrize("policy", ["retry", "hold"])
def test_a_message_that_kills_its_worker_stops_at_max_attempts(
        start_outbox: Any, database_url: str, policy: str) -> None:
    # The relay never answers DATA (data_timeout at its default of 10 minutes): every
    # try of the message is in flight when the process dies. max_attempts is 2 so that
    # two kills reach it (the limit itself is what is under test; the 20-kill test runs
    # at the default of 20).
    with ScriptedServer(script=[delay("DATA", 600)]) as sink:
        relay = relay_for(sink)
        outbox: OutboxProcess = start_outbox([relay], retry={"max_attempts": 2},
                                             delivery={"on_uncertain": policy,
                                                       "data_timeout": "10m"})
        with outbox.client() as client:
            accepted = client.post("/v1/messages", json={
                "from": "a@example.test", "to": "poison@example.test", "text": "x"}).json()
        for kill in range(2):
            wait_until(lambda k=kill: sink.commands.count("DATA") > k, timeout=30,
                       message=f"DATA of try {kill + 1}")
            outbox.kill()
            outbox = start_outbox([relay], config=outbox.config)
            if kill == 0 and policy == "hold":
                # Recovery holds uncertain mail under this policy; the operator retries it.
                wait_until(lambda o=outbox: get_message(o, accepted["id"])["status"] == "held",
                           timeout=RECOVERY_BOUND, message="the message to be held")
                with outbox.client() as client:
                    released = client.post(f"/v1/messages/{accepted['id']}/retry",
                                           json={"confirm": True})  # uncertain: it asks
                assert released.status_code == 200, released.text
        expected = "failed" if policy == "retry" else "held"
        wait_until(lambda: get_message(outbox, accepted["id"])["status"] == expected,
                   timeout=RECOVERY_BOUND, message=f"the message to be {expected}")
        message = get_message(outbox, accepted["id"])
        time.sleep(1.0)  # a third try would start at once (first_delay 200 ms)
    print(f"\n{policy}: {message['status']} after {message['attempts']} attempts; "
          f"{sink.commands.count('DATA')} DATA commands")
    assert message["attempts"] == 2
    assert sink.commands.count("DATA") == 2
    assert [e["type"] for e in message["events"]].count("uncertain") == 2


def test_claim_of_a_killed_owner_in_the_api_and_outbox_status(
        database_url: str, start_outbox: Any) -> None:
    with ScriptedServer(script=[delay("DATA", 600, times=2)]) as sink:
        relay = relay_for(sink)
        # The final reply may take its default 10 minutes (the e2e config cuts it to 5 s):
        # both deliveries stay in flight until the kill, however slow the machine.
        first: OutboxProcess = start_outbox([relay], delivery={"data_timeout": "10m"})
        ids = []
        with first.client() as client:
            for n in range(2):
                ids.append(client.post("/v1/messages", json={
                    "from": "a@example.test", "to": f"stuck{n}@example.test",
                    "text": "x"}).json()["id"])
        wait_until(lambda: sink.commands.count("DATA") == 2, timeout=30, message="two DATAs")
        one, two = ids
        live = get_message(first, one)
        owner = live["claim"]["owner"]
        assert live["status"] == "sending" and live["claim"]["owner_alive"] is True, live
        assert {owner} == {o for o, _ in claims(database_url).values()}

        # A second `serve` answers the API after the first dies, and leaves the dead
        # claim alone: its start-up recovery runs while the first is alive, and then
        # its sweep_interval is an hour (what this test looks at is the state before any
        # recovery; the tests above cover recovery at the default of 2 s).
        config = {**first.config, "server": {"bind": f"127.0.0.1:{free_port()}"},
                  "delivery": {**first.config["delivery"], "sweep_interval": "1h"}}
        second = start_outbox([relay], config=config)
        first.kill()
        # PostgreSQL drops the dead process's advisory lock when it sees the socket close.
        seen: list[dict[str, Any]] = []

        def dead_claim() -> dict[str, Any] | None:
            seen.append(get_message(second, one))
            claim = seen[-1]["claim"]
            return claim if claim and claim["owner_alive"] is False else None

        try:
            claim = wait_until(dead_claim, timeout=5, message="the owner to be seen dead")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {json.dumps(seen[-1])[:1500]}") from None
        print(f"\nclaim of a killed owner: {json.dumps(claim)}")
        assert claim["owner"] == owner and claim["owner_alive"] is False
        assert _time(claim["lease_until"]) > datetime.now(UTC), "the lease is still running"
        assert _time(claim["since"]) <= datetime.now(UTC)
        second.stop()

        # Nothing runs now.
        text = first.cli("status", one)
        print(text.stdout)
        assert text.returncode == 0, text.stderr
        assert owner in text.stdout
        lowered = text.stdout.lower()
        assert any(word in lowered for word in ("gone", "dead", "not running", "no longer")), (
            text.stdout)
        # ... and that a running worker puts it back at its next sweep.
        assert "worker" in lowered and "sweep" in lowered, text.stdout
        as_json = json.loads(first.cli("status", one, "--json", check=True).stdout)
        assert as_json["claim"]["owner_alive"] is False

        # The operator can act on mail whose owner is dead, with nothing running.
        cancelled = first.cli("queue", "cancel", one)
        assert cancelled.returncode == 0, cancelled.stderr
        retried = first.cli("queue", "retry", two, "--yes")  # in DATA when killed: uncertain
        assert retried.returncode == 0, retried.stderr
        assert statuses(database_url)[one] == "cancelled"
        assert statuses(database_url)[two] in {"queued", "deferred"}

        sink.set_script()
        after = start_outbox([relay], config=first.config)
        wait_until(lambda: get_message(after, two)["status"] == "sent", timeout=30,
                   message="the retried message to be sent")
        assert get_message(after, one)["status"] == "cancelled"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))



def test_every_message_answered_202_is_in_the_queue_after_kill_9(
        database_url: str, start_outbox: Any, closed_relay: dict[str, Any]) -> None:
    """SPEC: a 202 means the message is committed. Eight clients post in a loop (so the
    group commit gathers several messages, as under load) and serve is killed while
    they do; every id that came back with a 202 is in the database afterwards."""
    outbox: OutboxProcess = start_outbox([closed_relay])
    accepted: list[str] = []
    stop = threading.Event()

    def post_until_gone(client_number: int) -> None:
        with outbox.client() as client:
            n = 0
            while not stop.is_set():
                try:
                    answer = client.post("/v1/messages", json={
                        "from": "a@example.test", "to": f"c{client_number}-{n}@example.test",
                        "text": "x" * 200})
                except httpx.HTTPError:
                    return  # serve is gone
                assert answer.status_code == 202, answer.text
                accepted.append(answer.json()["id"])
                n += 1

    with ThreadPoolExecutor(8) as pool:
        posting = [pool.submit(post_until_gone, i) for i in range(8)]
        wait_until(lambda: len(accepted) >= 200, timeout=30, message="200 messages accepted")
        outbox.kill()
        stop.set()
        for future in posting:
            future.result()
    stored = {id for (id,) in sql(database_url, "SELECT id FROM messages")}
    missing = set(accepted) - stored
    print(f"\n{len(accepted)} answered 202 before the kill, {len(stored)} stored")
    assert not missing, f"{len(missing)} answered 202 are not stored: {sorted(missing)[:5]}"
