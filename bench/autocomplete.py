"""Autocomplete latency over an address book of 50,000 contacts.

    .venv/bin/python bench/autocomplete.py [--contacts 50000] [--queries 2000]
                                           [--backends sqlite,postgres] [--no-http]

For each backend: fill a fresh database with generated contacts (a tenth with
two addresses) and usage counts for 5,000 of their addresses, then time
`Store.suggest` for prefixes of 1 to 5 characters taken from real names and
addresses (the worst case is one letter: thousands of matches to rank), and
then `GET /v1/contacts/suggest` against a real `outbox serve` on the same
database over one keep-alive connection. Prints p50/p95/p99/max in milliseconds.
On PostgreSQL the load is followed by VACUUM ANALYZE, as autovacuum would do,
so the ranking query can be an index-only scan.
Target: p95 < 20 ms on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg import fresh_database  # noqa: E402
from tests.processes import API_KEY, OutboxProcess, base_config, write_config  # noqa: E402

from outbox.core.contacts import ContactChanges, NewContact  # noqa: E402
from outbox.store.base import Store  # noqa: E402
from outbox.store.factory import open_store  # noqa: E402

FIRST_NAMES = ("ann anna annika ben bob carl carol dana dave dee eva erik fay finn gina greg hana "
         "hugo ida ivan jane jon kara ken lea leo mia max nina noah olga otto pia paul quinn "
         "rosa ravi sara sam tara tom uma umar vera vic wen will xena yara yusuf zoe zeke")
LAST_NAMES = ("lee park stone smith jones brown khan garcia muller rossi nowak silva kim chen wang "
        "novak berg lind moreau dubois kowalski ivanova sato tanaka okafor mensah haddad "
        "cohen levi fischer weber wagner becker hoffmann schulz koch richter klein wolf "
        "schmidt meyer martin bernard petit durand leroy roux fournier girard")
FIRST, LAST = FIRST_NAMES.split(), LAST_NAMES.split()
DOMAINS = [f"dept{i}.corp.test" for i in range(20)] + ["mail.example", "home.test"]
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def generate(count: int, rng: random.Random) -> list[NewContact]:
    contacts = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        emails = [f"{first}.{last}{n}@{rng.choice(DOMAINS)}"]
        if n % 10 == 0:
            emails.append(f"{first[0]}{last}{n}@home.test")
        contacts.append(NewContact(f"{first.title()} {last.title()}", tuple(emails)))
    return contacts


def prefixes(contacts: list[NewContact], count: int, rng: random.Random) -> list[str]:
    found = []
    for _ in range(count):
        contact = rng.choice(contacts)
        source = rng.choice([contact.name.split()[0], contact.name.split()[-1],
                             contact.emails[0]])
        found.append(source[:rng.randint(1, 5)])
    return found


async def fill(store: Store, contacts: list[NewContact], rng: random.Random) -> None:
    for start in range(0, len(contacts), 5000):
        batch = ContactChanges(add=tuple(contacts[start:start + 5000]))
        await store.contacts.apply_contact_changes(batch, NOW)
    by_day: dict[int, dict[str, int]] = {}  # uses over the last 180 days, one write per day
    for contact in rng.sample(contacts, min(5000, len(contacts))):
        day = by_day.setdefault(rng.randint(0, 180), {})
        day[contact.emails[0].lower()] = rng.randint(1, 20)
    for days_ago, counts in sorted(by_day.items(), reverse=True):
        await store.contacts.record_usage(counts, NOW - timedelta(days=days_ago))


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return (f"p50 {cut[49]:6.2f} ms  p95 {cut[94]:6.2f} ms  p99 {cut[98]:6.2f} ms  "
            f"max {ordered[-1]:6.2f} ms  ({len(samples)} queries)")


async def time_store(url: str, queries: list[str]) -> list[float]:
    store = await open_store(url)
    try:
        for q in queries[:50]:  # warm the caches
            await store.contacts.suggest(q)
        samples = []
        for q in queries:
            started = time.perf_counter()
            await store.contacts.suggest(q)
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        await store.close()


def time_http(url: str, directory: Path, queries: list[str]) -> list[float]:
    config = base_config(directory, url, [{"name": "default", "host": "127.0.0.1", "port": 9,
                                           "security": "none"}],
                         logging={"level": "warning"})
    outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
    try:
        with httpx.Client(base_url=outbox.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            for q in queries[:50]:
                client.get("/v1/contacts/suggest", params={"q": q})
            samples = []
            for q in queries:
                started = time.perf_counter()
                response = client.get("/v1/contacts/suggest", params={"q": q})
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            return samples
    finally:
        outbox.stop(timeout=10)


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    context: Any = (nullcontext(f"sqlite:///{directory}/bench.db") if backend == "sqlite"
                    else fresh_database("outbox_bench"))
    with context as url:
        yield url


def run(backend: str, args: argparse.Namespace, stack: ExitStack) -> None:
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ac-bench-")))
    url = stack.enter_context(database(backend, directory))
    rng = random.Random(4)
    contacts = generate(args.contacts, rng)
    queries = prefixes(contacts, args.queries, rng)

    async def prepare() -> None:
        store = await open_store(url)
        try:
            await store.migrate()
            started = time.perf_counter()
            await fill(store, contacts, rng)
            print(f"{backend}: {len(contacts):,} contacts and 5,000 used addresses loaded in "
                  f"{time.perf_counter() - started:.1f} s")
        finally:
            await store.close()
        if backend == "postgres":  # what autovacuum does soon after a bulk load in real use
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("VACUUM ANALYZE")
            finally:
                await conn.close()

    asyncio.run(prepare())
    print(f"{backend} store  suggest: {percentiles(asyncio.run(time_store(url, queries)))}")
    one_letter = [q[:1] for q in queries[:500]]
    print(f"{backend} store  1-letter: {percentiles(asyncio.run(time_store(url, one_letter)))}")
    if args.http:
        print(f"{backend} HTTP   suggest: {percentiles(time_http(url, directory, queries))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--no-http", dest="http", action="store_false")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        with ExitStack() as stack:
            run(backend.strip(), args, stack)


if __name__ == "__main__":
    main()
