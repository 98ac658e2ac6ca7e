"""Flat at scale: 10,000 to 1,000,000 messages queued, on SQLite and PostgreSQL (issue 15).

The claim, `POST /v1/messages` and list-page latencies, the drain rate of 1,000 fresh
messages and the database bytes per message, at each queue size.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--backends sqlite,postgres]
                                    [--drain 1000] [--samples 200] [--rounds 5]

Each size of `--sizes` has a database of its own, per backend, filled once. Then come
`--rounds` rounds of measurements, each over every size in turn (from the smallest up in
the first round, from the largest down in the second, and so on). This machine's speed
drifts by a factor of two within minutes (the Python probe of bench/compare.py's noise
line, printed after each round here too: 43 to 110 ms within one stop): a size measured
once, minutes after the first, was as likely to read 20-50 % "costlier" as not (stop 47:
a different metric past 20 % in each run, each flat in the others). So a size's cost is
compared with the first size's in the same round, and the verdict takes the median of
the rounds' ratios; each round's ratio is printed beside it. Five rounds by default: ten
alternating pairs of 300 POSTs against 10,000 and 1,000,000 queued read ratios from
x0.78 to x1.68 (median x1.13), so the median of three could still land on either side
of x1.20.

- fill: the size's queue is filled, `outbox serve` stopped. The service's
  own batch submit manages about 700 msg/s here (24 minutes for 1,000,000) and the store's
  `enqueue_many` about 6,400, and neither can queue mail that is not yet due. So the
  backlog is copied in SQL from one template message written by the service (`submit`):
  `INSERT ... SELECT` from the template's rows in `messages`, `recipients` and `events`,
  10,000 messages per statement, each copy with its own id and Message-ID (`outbox.ids`,
  as the service makes them), its own recipient (`user-T<n>@example.test`, also in the
  content's To and subject: the same JSON text the service writes for that address) and
  its own acceptance time. Every other column is the template's. Unlike the service's
  rows, `due_at` is 30 days after acceptance: the backlog waits, so that only the fresh
  messages drain. The copies add no address-book usage rows (one per distinct address,
  not per message). PostgreSQL is then vacuumed and analysed, as autovacuum does by
  itself within a minute or so of such a fill (bench/ui.py does the same), and
  checkpointed, as the server does within `checkpoint_timeout`: gigabytes written in a
  minute or two would otherwise still be flushing while the checkpoint is measured, a
  cost of the artificial fill rather than of the queue's size (SQLite's WAL is
  checkpointed too, for the size). SQLite is left without ANALYZE, as Outbox leaves it.
- claim: in-process, the store's `claim_due` of a batch (`[delivery] batch_size`, 128) at
  a time 60 days ahead, so that the whole backlog is due to it: the oldest 128 of N due
  messages. After each sample the claim is undone in SQL (queued again with its due
  time, its `claimed` events deleted): every sample sees the same queue.
- drain: `--drain` fresh messages submitted in-process through the service's batch
  submit, held off like the backlog; `outbox serve` started, relaying to Postfix's
  smtp-sink (or the aiosmtpd sink of tests/smtpd.py when smtp-sink is missing: `make
  bench` installs it); two seconds after /healthz said ok, the fresh messages made due
  at once in SQL (as a retry time passing does). The rate is the fresh messages over the
  time from their first `claimed` event to the last attempt's `finished_at` (the
  service's own timestamps: the start-up, the poll interval and the sink's polling do
  not count). "ready" is the seconds from the spawn to /healthz 200.
- POST: `--samples` sequential `POST /v1/messages` over one keep-alive connection (they
  are delivered meanwhile, as in service; the bench waits for them before stopping).
- list: `GET /v1/messages?status=queued` (50 a page): the first page, and a deep page
  (a cursor in the middle of the backlog), `--samples` times each over one connection.
- bytes per message: the database's size over its messages (SQLite: the file after a
  WAL checkpoint, WAL included; PostgreSQL: pg_database_size less that of the empty
  schema).

Prints one table per backend (p50 / p99 in ms over every round's samples; in brackets the
median ratio described above, for the p50 or the rate; the highest load average seen
after a size's measurements) and a line saying, per metric, whether any size's median
ratio is more than 20 % over the first size's cost (the p50's time per request, or the
time per message drained; a size that is faster is not a growth and counts as flat),
with the range of those ratios and the rounds' ratios at the costliest size. Every
process started here is stopped by PID; the temporary directory and the PostgreSQL
databases are removed. No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from sqlalchemy import Connection, Engine, bindparam, delete, func, select, text, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402
from tests.dbsql import sql  # noqa: E402
from tests.processes import OutboxProcess, base_config, wait_until, write_config  # noqa: E402

from bench.compare import Sink, cpu_probe, database, message, percentile  # noqa: E402
from bench.throughput import sink_count, start_sink  # noqa: E402
from outbox.config import LoggingSettings, Settings  # noqa: E402
from outbox.core.compose import Submission  # noqa: E402
from outbox.ids import new_message_id, new_message_key  # noqa: E402
from outbox.observability import configure_logging  # noqa: E402
from outbox.service import Outbox  # noqa: E402
from outbox.service.messages import BatchItem  # noqa: E402
from outbox.store import postgres as pg_store  # noqa: E402
from outbox.store import sqlite as sqlite_store  # noqa: E402
from outbox.store.tables import UtcDateTime, attempts, events, messages, recipients  # noqa: E402
from outbox.store.urls import database_url  # noqa: E402

T = TypeVar("T")

TEXT = "x" * 900  # with the headers, about 1 KB on the wire (as bench/compare.py)
TOKEN = "T0000000"  # in the template's address and subject; each copy has its own number
DOMAIN = "example.test"
HOLD_OFF = timedelta(days=30)  # the backlog is due this long after its acceptance
CHUNK = 10_000  # copies per statement
PAGE = 50
SETTLE = 2.0  # seconds between /healthz 200 and the fresh messages falling due
FLAT = 0.20
OWNER = "app"  # the API key's name in base_config: the backlog looks submitted over HTTP


# --- the bench's own SQL ------------------------------------------------------------------

class Database:
    """Statements of the bench itself (the fill, undoing claims, sizes) on the engine
    Outbox would build for the URL; each call one transaction."""

    def __init__(self, url: str) -> None:
        parsed = database_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        self.engine: Engine | AsyncEngine = (
            sqlite_store.create_engine(parsed).execution_options(
                **{sqlite_store.BEGIN_OPTION: "IMMEDIATE"})
            if self.sqlite else pg_store.create_engine(parsed, pool_size=1))

    async def run(self, body: Callable[..., T], *args: Any) -> T:
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as conn:
                return await conn.run_sync(body, *args)
        with self.engine.begin() as conn:
            return body(conn, *args)

    async def close(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
        else:
            self.engine.dispose()

    def stamp(self, at: datetime) -> str:
        """A time as the copy statements take it (SQLite: the text UtcDateTime stores)."""
        return at.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else at.isoformat()

    def copy_statements(self) -> list[Any]:
        """The template's rows in messages, recipients and events, once per element of
        the JSON array `:rows` ({id, mid, at, due, tag}); every column not named here is
        the template's."""
        if self.sqlite:
            source = "json_each(:rows) AS v"

            def value(name: str) -> str:
                return f"json_extract(v.value, '$.{name}')"

            content = f"replace(t.content, :token, {value('tag')})"
        else:
            source = ('json_to_recordset(CAST(:rows AS json)) AS v("id" text, "mid" text, '
                      '"at" timestamptz, "due" timestamptz, "tag" text)')

            def value(name: str) -> str:
                return f'v."{name}"'

            content = f"CAST(replace(CAST(t.content AS text), :token, {value('tag')}) AS json)"
        overrides: dict[str, dict[str, str | None]] = {
            "messages": {"id": value("id"), "message_id": value("mid"), "content": content,
                         "created_at": value("at"), "updated_at": value("at"),
                         "due_at": value("due")},
            "recipients": {"message_id": value("id"),
                           "address": f"replace(t.address, :token, {value('tag')})"},
            "events": {"id": None, "message_id": value("id"), "at": value("at")},
        }
        where = {"messages": "t.id = :template", "recipients": "t.message_id = :template",
                 "events": "t.message_id = :template AND t.type = 'queued'"}
        statements = []
        for table in (messages, recipients, events):
            chosen = overrides[table.name]
            columns = [c.name for c in table.columns if chosen.get(c.name, "") is not None]
            picked = [chosen.get(name) or f't."{name}"' for name in columns]
            names = ", ".join(f'"{name}"' for name in columns)
            statements.append(text(f"INSERT INTO {table.name} ({names}) SELECT "
                                   f"{', '.join(str(p) for p in picked)} FROM {table.name} t, "
                                   f"{source} WHERE {where[table.name]}"))
        return statements

    async def copy(self, template: str, start: int, stop: int) -> None:
        statements = self.copy_statements()

        def body(conn: Connection, rows: str) -> None:
            for statement in statements:
                conn.execute(statement, {"rows": rows, "token": TOKEN, "template": template})

        for first in range(start, stop, CHUNK):
            batch = []
            for n in range(first, min(first + CHUNK, stop)):
                at = datetime.now(UTC)
                batch.append({"id": new_message_key(), "mid": new_message_id(DOMAIN),
                              "at": self.stamp(at), "due": self.stamp(at + HOLD_OFF),
                              "tag": f"T{n:07d}"})
            await self.run(body, json.dumps(batch))

    async def hold_off(self, ids: Sequence[str]) -> None:
        """Claimed (or new) messages back to queued, due HOLD_OFF after their acceptance,
        without their `claimed` events: as the fill left them."""
        m = messages

        def body(conn: Connection) -> None:
            found = conn.execute(select(m.c.id, m.c.created_at).where(m.c.id.in_(ids))).all()
            conn.execute(update(m).where(m.c.id == bindparam("b_id")).values(
                status="queued", due_at=bindparam("b_due", type_=UtcDateTime()),
                updated_at=bindparam("b_at", type_=UtcDateTime()), claimed_by=None,
                claim_token=None, lease_until=None),
                [{"b_id": r.id, "b_due": r.created_at + HOLD_OFF, "b_at": r.created_at}
                 for r in found])
            conn.execute(delete(events).where(events.c.message_id.in_(ids),
                                              events.c.type == "claimed"))

        await self.run(body)

    async def make_due(self, ids: Sequence[str]) -> None:
        """These messages due now, all at once (as a retry time passing does)."""
        stmt = update(messages).where(messages.c.id.in_(ids)).values(due_at=datetime.now(UTC))
        await self.run(lambda conn: conn.execute(stmt))

    async def count(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(messages)
        if status is not None:
            query = query.where(messages.c.status == status)
        return int(await self.run(lambda conn: conn.execute(query).scalar_one()))

    async def sent(self, ids: Sequence[str]) -> int:
        query = select(func.count()).where(messages.c.id.in_(ids), messages.c.status == "sent")
        return int(await self.run(lambda conn: conn.execute(query).scalar_one()))

    async def drain_span(self, ids: Sequence[str]) -> float:
        """Seconds from the first claim of these messages to their last attempt's end."""
        first = select(func.min(events.c.at)).where(events.c.message_id.in_(ids),
                                                    events.c.type == "claimed")
        last = select(func.max(attempts.c.finished_at)).where(attempts.c.message_id.in_(ids))

        def body(conn: Connection) -> float:
            began, ended = conn.execute(first).scalar_one(), conn.execute(last).scalar_one()
            return float((ended - began).total_seconds())

        return await self.run(body)

    async def middle_cursor(self, queued: int) -> str:
        """The API's cursor (`<µs since 1970>_<id in hex>`, api.listing's published form)
        of the queued message in the middle of the backlog."""
        m = messages
        query = (select(m.c.created_at, m.c.id).where(m.c.status == "queued")
                 .order_by(m.c.created_at.desc(), m.c.id.desc()).offset(queued // 2).limit(1))
        row = (await self.run(lambda conn: conn.execute(query).all()))[0]
        micros = (row.created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return f"{micros}_{row.id.encode().hex()}"

    async def size(self, url: str) -> int:
        if isinstance(self.engine, Engine):  # SQLite: outside a transaction
            raw = self.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
            path = Path(str(database_url(url).database))
            return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        return int(await self.run(
            lambda conn: conn.execute(select(func.pg_database_size(func.current_database())))
            .scalar_one()))


# --- one checkpoint -----------------------------------------------------------------------

@dataclass
class Checkpoint:
    queued: int
    fill_rate: float = 0.0  # messages copied per second
    claim: list[float] = field(default_factory=list)  # seconds per claim of a batch
    post: list[float] = field(default_factory=list)
    first_page: list[float] = field(default_factory=list)
    deep_page: list[float] = field(default_factory=list)
    drain: float = 0.0  # msg/s
    ready: float = 0.0  # seconds from the spawn of `outbox serve` to /healthz 200
    load: float = 0.0  # the machine's 1-minute load average after the measurements
    bytes_per_message: float = 0.0


async def open_outbox(config: dict[str, Any]) -> Outbox:
    configure_logging(LoggingSettings(level="warning"))
    return await Outbox.open(Settings(**{k: v for k, v in config.items() if k != "logging"}))


async def make_template(config: dict[str, Any], db: Database) -> str:
    """The message every copy is made from, written by the service; itself part of the
    backlog (message 0)."""
    outbox = await open_outbox(config)
    try:
        submitted = await outbox.messages.submit(Submission(
            sender=f"bench@{DOMAIN}", to=f"user-{TOKEN}@{DOMAIN}", subject=f"Bench {TOKEN}",
            text=TEXT), owner=OWNER)
    finally:
        await outbox.close()
    await db.hold_off([submitted.message.id])
    return submitted.message.id


async def measure_claims(config: dict[str, Any], db: Database, samples: int) -> list[float]:
    outbox = await open_outbox(config)
    store = outbox.store.messages
    batch = outbox.settings.delivery.batch_size
    times = []
    try:
        for sample in range(samples + 1):  # the first warms the caches
            now = datetime.now(UTC) + 2 * HOLD_OFF
            started = time.perf_counter()
            claims = await store.claim_due("bench-claims", now, now + timedelta(minutes=5), batch)
            elapsed = time.perf_counter() - started
            if len(claims) != batch:
                raise SystemExit(f"claimed {len(claims)} messages, not {batch}")
            await db.hold_off([c.message.id for c in claims])
            if sample:
                times.append(elapsed)
    finally:
        await outbox.close()
    return times


async def submit_fresh(config: dict[str, Any], count: int, label: int) -> list[str]:
    """`count` messages through the service's batch submit (due now); their ids."""
    outbox = await open_outbox(config)
    ids: list[str] = []
    try:
        for start in range(0, count, 500):
            results = await outbox.messages.submit_many([BatchItem(Submission(
                sender=f"bench@{DOMAIN}", to=f"fresh{label}-{n}@{DOMAIN}",
                subject=f"Fresh {n}", text=TEXT)) for n in range(start, min(start + 500, count))],
                owner=OWNER)
            for result in results:
                if isinstance(result, Exception):
                    raise result
                ids.append(result.message.id)
    finally:
        await outbox.close()
    return ids


def timed(client: httpx.Client, samples: int, request: Callable[[int], httpx.Response]
          ) -> list[float]:
    request(-1)  # warm
    times = []
    for n in range(samples):
        started = time.perf_counter()
        response = request(n)
        times.append(time.perf_counter() - started)
        if response.status_code >= 300:
            raise SystemExit(f"{response.request.url}: {response.status_code} {response.text}")
    return times


# --- the sink -----------------------------------------------------------------------------

class AiosmtpdSink:
    """tests/smtpd.py as a process (when Postfix's smtp-sink is not installed)."""

    def __init__(self, directory: Path) -> None:
        self.proc, self.port, self.counts = start_sink(directory)

    def count(self) -> int:
        return sink_count(self.counts)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def any_sink(directory: Path) -> Sink | AiosmtpdSink:
    return Sink(directory) if Path("/usr/sbin/smtp-sink").exists() else AiosmtpdSink(directory)


# --- a backend: one database per size, measured in interleaved rounds ----------------------

@dataclass
class Queue:
    """One database holding `size` queued messages, and the config that serves it."""

    size: int
    url: str
    config: dict[str, Any]
    path: Path
    db: Database
    fill_rate: float = 0.0
    bytes_per_message: float = 0.0
    deep: str = ""  # the list cursor in the middle of the backlog


def run_backend(backend: str, sizes: list[int], drain: int, samples: int, rounds: int,
                root: Path) -> list[list[Checkpoint]]:
    """Each round's checkpoints, one per size, in the order of `sizes`."""
    with ExitStack() as stack:
        sink = any_sink(Path(tempfile.mkdtemp(dir=root)))
        stack.callback(sink.stop)
        queues = []
        for size in sizes:
            directory = Path(tempfile.mkdtemp(dir=root))
            url = stack.enter_context(database(backend, directory))
            relay = {"name": "default", "host": "127.0.0.1", "port": sink.port,
                     "security": "none", "max_connections": 20}
            config = base_config(
                directory, url, [relay],
                logging={"level": "warning", "format": "json",
                         "file": str(directory / "outbox.log")},
                delivery={"poll_interval": "100ms", "helo_name": "bench.test"})
            config["delivery"].pop("processes")  # serve's default, as compare.py (tests set 0)
            path = write_config(directory / "outbox.toml", config)
            queues.append(Queue(size, url, config, path, Database(url)))
        return asyncio.run(_rounds(backend, queues, sink, drain, samples, rounds))


async def _rounds(backend: str, queues: list[Queue], sink: Sink | AiosmtpdSink, drain: int,
                  samples: int, rounds: int) -> list[list[Checkpoint]]:
    try:
        return await _measure_rounds(backend, queues, sink, drain, samples, rounds)
    finally:
        for queue in queues:
            await queue.db.close()


async def _measure_rounds(backend: str, queues: list[Queue], sink: Sink | AiosmtpdSink,
                          drain: int, samples: int, rounds: int) -> list[list[Checkpoint]]:
    for queue in queues:
        await _fill(backend, queue)
    results = []
    for number in range(rounds):
        # Every other round from the largest down: a drift of the machine's speed over
        # the run then weighs on each size alike.
        order = queues if number % 2 == 0 else queues[::-1]
        points = {}
        for queue in order:
            points[queue.size] = await _measure(queue, sink, drain, samples,
                                                label=queue.size * 100 + number)
        print(f"  round {number + 1}: {noise()}", flush=True)
        results.append([points[queue.size] for queue in queues])
    return results


async def _fill(backend: str, queue: Queue) -> None:
    await (await open_outbox(queue.config)).close()  # the schema, whose size is not the messages'
    empty = await queue.db.size(queue.url)
    template = await make_template(queue.config, queue.db)
    started = time.perf_counter()
    await queue.db.copy(template, 1, queue.size)
    queue.fill_rate = (queue.size - 1) / max(time.perf_counter() - started, 1e-9)
    if backend == "postgres":  # what autovacuum and the checkpointer do after a while
        sql(queue.url, "VACUUM ANALYZE", timeout=1800)
        sql(queue.url, "CHECKPOINT", timeout=1800)
    total = await queue.db.count()
    queue.bytes_per_message = (await queue.db.size(queue.url) - empty) / total
    queue.deep = await queue.db.middle_cursor(queue.size)
    print(f"{backend}: {queue.size:,} queued ({total:,} messages), filled at "
          f"{queue.fill_rate:,.0f} msg/s", flush=True)


async def _measure(queue: Queue, sink: Sink | AiosmtpdSink, drain: int, samples: int,
                   label: int) -> Checkpoint:
    point = Checkpoint(queue.size, queue.fill_rate, bytes_per_message=queue.bytes_per_message)
    db = queue.db
    point.claim = await measure_claims(queue.config, db, samples)
    fresh = await submit_fresh(queue.config, drain, label)
    await db.hold_off(fresh)  # until `serve` has started
    target = sink.count() + drain
    serve = OutboxProcess(queue.path, queue.config)
    try:
        serve.start(wait=False)
        serve.wait_healthy(timeout=600)
        point.ready = time.monotonic() - serve.started_at
        await asyncio.sleep(SETTLE)
        await db.make_due(fresh)
        wait_until(lambda want=target: sink.count() >= want, timeout=900, interval=0.05,
                   message="the fresh messages at the sink")
        while await db.sent(fresh) < drain:
            await asyncio.sleep(0.1)
        point.drain = drain / await db.drain_span(fresh)
        _over_http(point, serve, samples, queue.deep)
        wait_until(lambda want=target + samples + 1: sink.count() >= want, timeout=900,
                   interval=0.05, message="the POSTed messages at the sink")
        point.load = os.getloadavg()[0]
    finally:
        serve.stop(timeout=60)
    if await db.count("queued") != queue.size:
        print(f"  note: {await db.count('queued'):,} queued, not {queue.size:,}", flush=True)
    print(f"  {queue.size:,}: claim p50 {statistics.median(point.claim) * 1000:.1f} ms, POST "
          f"p50 {statistics.median(point.post) * 1000:.1f} ms, drain {point.drain:,.0f} msg/s",
          flush=True)
    return point


def _over_http(point: Checkpoint, serve: OutboxProcess, samples: int, deep: str) -> None:
    with serve.client() as client:
        point.post = timed(client, samples,
                           lambda n: client.post("/v1/messages", json=message(n)))
        queued: dict[str, str | int] = {"status": "queued", "limit": PAGE}
        point.first_page = timed(client, samples,
                                 lambda n: client.get("/v1/messages", params=queued))
        point.deep_page = timed(client, samples, lambda n: client.get(
            "/v1/messages", params={**queued, "cursor": deep}))


# --- the table ----------------------------------------------------------------------------

LATENCIES = {"claim": "claim", "post": "POST", "first_page": "list first page",
             "deep_page": "list deep page"}


def report(backend: str, rounds: list[list[Checkpoint]], drain: int) -> None:
    """Samples pooled over the rounds; a ratio is the median over the rounds of each
    round's own ratio to the first size in that round."""
    sizes = [point.queued for point in rounds[0]]
    print(f"\n{backend}, {len(rounds)} round(s): p50 / p99 ms over all rounds' samples "
          f"(median over the rounds of the p50's ratio to {sizes[0]:,} queued in the same "
          f"round); drain of {drain:,} fresh messages in msg/s (median of the rounds)")
    print("| queued | fill msg/s | " + " | ".join(LATENCIES.values())
          + " | drain msg/s | bytes / message | serve ready s | load |")
    print("|---" * (len(LATENCIES) + 6) + "|")
    for index, size in enumerate(sizes):
        at_size = [measured[index] for measured in rounds]
        cells = []
        for key in LATENCIES:
            pooled = [value for point in at_size for value in getattr(point, key)]
            cells.append(f"{percentile(pooled, 0.5) * 1000:.1f} / "
                         f"{percentile(pooled, 0.99) * 1000:.1f} "
                         f"({statistics.median(_growth(rounds, key, index)):.2f})")
        drains = [point.drain for point in at_size]
        print(f"| {size:,} | {at_size[0].fill_rate:,.0f} | " + " | ".join(cells)
              + f" | {statistics.median(drains):,.0f} "
              f"({1 / statistics.median(_growth(rounds, 'drain', index)):.2f}) "
              f"| {at_size[0].bytes_per_message:,.0f} "
              f"| {statistics.median(p.ready for p in at_size):.1f} "
              f"| {max(p.load for p in at_size):.1f} |")
    verdicts = []
    for key, name in [*LATENCIES.items(), ("drain", "drain rate")]:
        # A cost: the time per request (or per message drained) relative to the first size
        # in the same round; a size's cost is the median of its rounds.
        costs = [(statistics.median(_growth(rounds, key, index)), index)
                 for index in range(1, len(sizes))]
        if not costs:
            continue
        worst, at = max(costs)
        each = " ".join(f"x{ratio:.2f}" for ratio in _growth(rounds, key, at))
        verdicts.append(f"{name}: {'flat' if worst <= 1 + FLAT else 'NOT flat'} "
                        f"(x{min(c for c, _ in costs):.2f}-x{worst:.2f}; at {sizes[at]:,} "
                        f"the rounds were {each})")
    print(f"{backend}: no size more than {FLAT:.0%} costlier than {sizes[0]:,} queued (time "
          "per request or per message drained, against the first size in the same round, "
          "median of the rounds)? " + "; ".join(verdicts))


def _growth(rounds: list[list[Checkpoint]], key: str, index: int) -> list[float]:
    """Each round's cost at the size `index` over that round's cost at the first size."""
    return [_cost(points[index], key) / _cost(points[0], key) for points in rounds]


def _cost(point: Checkpoint, key: str) -> float:
    return 1 / point.drain if key == "drain" else percentile(getattr(point, key), 0.5)


def noise() -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"machine: {os.cpu_count()} cores, load average {load}; {cpu_probe()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="queued messages in each size's database")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--drain", type=int, default=1000,
                        help="fresh messages drained per size and round")
    parser.add_argument("--samples", type=int, default=200,
                        help="claims, POSTs and pages of each kind timed per size and round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of measurements, each over every size in turn")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] < 2 * PAGE + 64:
        raise SystemExit(f"the smallest size must hold at least {2 * PAGE + 64} messages")
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    print(noise(), flush=True)
    with tempfile.TemporaryDirectory() as root:
        for backend in args.backends.split(","):
            rounds = run_backend(backend, sizes, args.drain, args.samples, args.rounds,
                                 Path(root))
            report(backend, rounds, args.drain)
    print(noise())


if __name__ == "__main__":
    main()
