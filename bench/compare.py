"""Outbox beside Postfix on this machine, interleaved rep by rep (SPEC §4, issue 15).

    make bench          # = scripts/bench-deps.sh, then:
    .venv/bin/python bench/compare.py [--messages 5000] [--reps 3] [--backends sqlite,postgres]
                                      [--paths http,http-lean,batch,smtp,smtp-source,drain,restart]
                                      [--delivery-processes N|auto] [--paced-rate 500]

Per rep, in this order:
- Postfix as a durable loopback relay (../shared/bench-anchors/30_postfix_relay.sh,
  MODE=live then MODE=drain): smtp-source (20 sessions) → Postfix → its own smtp-sink.
- For each backend, each on a fresh database, `outbox serve` relaying to one smtp-sink
  started here (20 relay connections). PostgreSQL is reached over its Unix socket, as
  a server on the same machine is best reached: against TCP on 127.0.0.1 (stop 44,
  bench/cpu_split.py, pairs of runs), serve and the delivery process spent 7-18 % less
  CPU per message, http-lean ran 8-21 % faster and drain 6-24 %:
  - http:  20 keep-alive clients `POST /v1/messages`, one message each time (httpx);
  - http-lean: the same with bench/raw_http.py's client, which costs the server's
           cores next to nothing, as smtp-source does Postfix's;
  - http-paced: not among the default paths. http-lean's 20 clients at a fixed
           rate in all (--paced-rate), each request due at its own time, as a
           latency figure. The flat-out paths' latency is set by their rate (20
           clients, each waiting for its answer before the next: p50 ≈ 20 / rate).
           Here each latency counts from when the request was due, so a server that
           falls behind shows it (no coordinated omission); a client's own timer
           waking late does not count. Its msg/s is the offered rate, and it has no
           ratio;
  - batch: 20 clients `POST /v1/messages/batch` of 100;
  - smtp:  20 SMTP submission sessions (AUTH PLAIN with the API key; smtp-source cannot
           log in, so the client is aiosmtplib);
  - smtp-source: Postfix's own driver, as the anchor runs it against Postfix (20
           sessions, each over one connection), into the listener, which takes mail
           from 127.0.0.1 without AUTH as the key `app` ([submission]
           trusted_networks, as Postfix's mynetworks): SPEC §4's smtp-source → Outbox
           → smtp-sink. It reports no latencies;
  - drain: as the anchor drains Postfix: the queue filled and held (Outbox stopped),
           `outbox serve` started and ready, then the relay's held mail released in one
           call (`mark_ok`, what a passing "test connection" of a relay that needed
           attention does), timed from the release, like `postsuper -H ALL; postqueue
           -f` with Postfix running;
  - restart: the queue filled (Outbox stopped), then `outbox serve` started, timed from
           the start: the drain after a restart, start-up included (about 3 s here, for
           both processes' imports and the recovery sweep); Postfix's drain, which
           leaves its start-up out, is still the ratio's reference.
  The rate is messages over the time from the first submit (or the release, or the start)
  until the sink has them all; accept is messages over the time to the last 202/250.

Prints one table: msg/s per system, path and rep; the ratio to Postfix's live (or drain)
rate of the same rep; medians; accept latency p50/p99/p99.9; CPU seconds per 1,000
messages (the Outbox process and its children); a noise line (load average, fsync probe,
a Python probe and the interpreter that ran it, the cost of a hand-over between two
threads, and the share of CPU time the hypervisor took over the run: bench/cpu_steal.py).
Every process started here is stopped by PID. No assertions: the figures are the output.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from tests.pg import fresh_database  # noqa: E402
from tests.processes import API_KEY, OutboxProcess, base_config, free_port, write_config  # noqa: E402

from bench.cpu_steal import CpuTimes, cpu_times, shares  # noqa: E402
from bench.raw_http import RawHttp  # noqa: E402
from bench.throughput import fill_queue  # noqa: E402
from outbox.clock import utcnow  # noqa: E402
from outbox.config.units import parse_process_count  # noqa: E402
from outbox.core.model import Event, EventType  # noqa: E402
from outbox.store.factory import open_store  # noqa: E402

ANCHORS = REPO.parent / "shared" / "bench-anchors"
CLIENTS = 20
TEXT = "x" * 900  # with the headers, about 1 KB on the wire
SMTP_SOURCE = "/usr/sbin/smtp-source"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    system: str  # postfix | outbox
    path: str  # live, drain, http, http-lean, batch, smtp, restart
    backend: str  # "" for postfix
    rate: float  # msg/s end to end
    accept: float = 0.0  # msg/s accepted (202 / 250 / smtpd)
    cpu_per_1000: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per accepted request


# --- the sink ---------------------------------------------------------------------------

class Sink:
    """Postfix's smtp-sink on a free loopback port, counting what it accepted."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.out = (directory / "sink.out").open("wb")
        self.proc = subprocess.Popen(
            ["timeout", "7200", "/usr/sbin/smtp-sink", "-c", "-u", "postfix",
             f"127.0.0.1:{self.port}", "1024"], stdout=self.out, stderr=subprocess.STDOUT)
        self.path = directory / "sink.out"
        time.sleep(0.3)

    def count(self) -> int:
        tail = self.path.read_bytes()[-400:].replace(b"\r", b"\n")
        found = re.findall(rb"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def wait_for(self, target: int, timeout: float = 900) -> float:
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise SystemExit(f"the sink got {self.count()} of {target} messages in time")
            time.sleep(0.02)
        return time.perf_counter()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


# --- Postfix ------------------------------------------------------------------------------

def postfix(mode: str, count: int, directory: Path) -> Run | None:
    script = ANCHORS / "30_postfix_relay.sh"
    if not script.exists():
        return None
    env = {**os.environ, "MODE": mode, "N": str(count), "SIZE": "1024", "SESS": str(CLIENTS),
           "CONC": str(CLIENTS), "REPS": "1", "RESULTS_DIR": str(directory)}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    rows = [line.split("\t") for line in result.stdout.splitlines()
            if line.startswith("postfix") or line.startswith("B\t") or "\t" in line]
    header = next((r for r in rows if "deliver_msgs_per_s" in r), None)
    data = [r for r in rows if header and len(r) == len(header) and r[0] != header[0]]
    if header is None or not data:
        print(f"postfix {mode}: no figures ({result.stderr.strip()[-300:]})", flush=True)
        return None
    row = dict(zip(header, data[-1], strict=True))
    # The anchor's cpu column is the machine's busy share, not Postfix's CPU time: left out.
    return Run("postfix", mode, "", _float(row["deliver_msgs_per_s"]),
               _float(row["ingest_msgs_per_s"]), -1.0)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


# --- Outbox -------------------------------------------------------------------------------

DELIVERY_PROCESSES: int | str = "auto"  # [delivery] processes of every Outbox run


def outbox_config(directory: Path, url: str, sink: Sink, *, smtp: bool) -> dict[str, Any]:
    sections: dict[str, Any] = {
        # The default level (info), as an operator runs it: a line for each message
        # accepted and each delivery, as Postfix logs each message it takes and sends.
        "logging": {"format": "json", "file": str(directory / "outbox.log")},
        "delivery": {"poll_interval": "100ms",  # concurrency and batch_size: the defaults
                     "helo_name": "bench.test", "processes": DELIVERY_PROCESSES},
        "retry": {"first_delay": "1s", "max_delay": "10s", "max_attempts": 20, "max_age": "1h"},
        "auth": {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]}]},
    }
    if smtp:
        sections["submission"] = {"bind": f"127.0.0.1:{free_port()}", "security": "none",
                                  "trusted_networks": ["127.0.0.1/32"], "trusted_key": "app"}
    relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none",
             "max_connections": CLIENTS}
    return base_config(directory, url, [relay], **sections)


def cpu_seconds(pid: int) -> float:
    """CPU of the process, of its children that ended, and of those still running
    (delivery processes, `--delivery-processes`)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0  # ended meanwhile
    own = sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime
    return own + sum(cpu_seconds(int(child)) for child in children)


def message(n: int) -> dict[str, Any]:
    return {"from": "bench@example.test", "to": f"user{n}@example.test",
            "subject": f"Bench {n}", "text": TEXT}


async def post_each(base: str, count: int, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"},
                                 limits=httpx.Limits(max_keepalive_connections=CLIENTS),
                                 timeout=60) as client:
        async def one_client(numbers: range) -> None:
            for n in numbers:
                started = time.perf_counter()
                response = await client.post("/v1/messages", json=message(n))
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(one_client(range(c, count, CLIENTS)) for c in range(CLIENTS)))


async def post_each_lean(base: str, count: int, latencies: list[float]) -> None:
    """`post_each` with bench/raw_http.py's client: httpx spends 1-2 ms of CPU per
    request on the server's own two cores; smtp-source, Postfix's driver, is C."""
    async def one_client(numbers: range) -> None:
        async with RawHttp.for_url(base, API_KEY) as http:
            for n in numbers:
                started = time.perf_counter()
                status, answer = await http.post_json("/v1/messages", message(n))
                latencies.append(time.perf_counter() - started)
                if status != 202:
                    raise RuntimeError(f"POST /v1/messages: {status} {answer[:200]!r}")

    await asyncio.gather(*(one_client(range(c, count, CLIENTS)) for c in range(CLIENTS)))


PACED_RATE = 500.0  # messages a second in all (--paced-rate): about half of Postfix's live


async def post_paced(base: str, count: int, latencies: list[float]) -> None:
    """http-lean's clients, message n due at n / PACED_RATE seconds."""
    start = time.perf_counter() + 0.05

    async def one_client(numbers: range) -> None:
        async with RawHttp.for_url(base, API_KEY) as http:
            for n in numbers:
                origin = start + n / PACED_RATE
                if origin > time.perf_counter():  # on time: the server is not behind
                    await asyncio.sleep(origin - time.perf_counter())
                    origin = time.perf_counter()  # the timer's own lateness is not the server's
                status, answer = await http.post_json("/v1/messages", message(n))
                latencies.append(time.perf_counter() - origin)
                if status != 202:
                    raise RuntimeError(f"POST /v1/messages: {status} {answer[:200]!r}")

    await asyncio.gather(*(one_client(range(c, count, CLIENTS)) for c in range(CLIENTS)))


async def post_batches(base: str, count: int, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"},
                                 timeout=120) as client:
        batches = [list(range(s, min(s + 100, count))) for s in range(0, count, 100)]

        async def one_client(mine: list[list[int]]) -> None:
            for batch in mine:
                started = time.perf_counter()
                response = await client.post("/v1/messages/batch",
                                             json={"messages": [message(n) for n in batch]})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(one_client(batches[c::CLIENTS]) for c in range(CLIENTS)))


async def submit_smtp(bind: str, count: int, latencies: list[float]) -> None:
    import aiosmtplib

    host, port = bind.rsplit(":", 1)

    async def one_session(numbers: range) -> None:
        smtp = aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False, timeout=60)
        await smtp.connect()
        await smtp.login("app", API_KEY)
        for n in numbers:
            body = (f"From: bench@example.test\r\nTo: user{n}@example.test\r\nSubject: Bench "
                    f"{n}\r\nMessage-ID: <bench-{n}-{time.time_ns()}@bench.test>\r\n\r\n{TEXT}\r\n")
            started = time.perf_counter()
            await smtp.sendmail("bench@example.test", [f"user{n}@example.test"], body)
            latencies.append(time.perf_counter() - started)
        await smtp.quit()

    await asyncio.gather(*(one_session(range(c, count, CLIENTS)) for c in range(CLIENTS)))


async def submit_smtp_source(bind: str, count: int, latencies: list[float]) -> None:
    """Postfix's own driver, as the anchor injects into Postfix (20 sessions, each over
    one connection, 1 KB), into a listener that trusts 127.0.0.1 as the key `app`
    (smtp-source cannot log in). It reports no per-message latencies."""
    command = [SMTP_SOURCE, "-d", "-M", "anchors.localdomain", "-f", "sender@example.com",
               "-t", "rcpt@example.net", "-s", str(CLIENTS), "-m", str(count), "-l", "1024",
               bind]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    if process.returncode != 0 or output.strip():
        raise RuntimeError(f"smtp-source: exit {process.returncode}: {output[-300:]!r}")


LOADS: dict[str, Callable[..., Any]] = {"http": post_each, "http-lean": post_each_lean,
                                        "http-paced": post_paced,
                                        "batch": post_batches,
                                        "smtp": submit_smtp, "smtp-source": submit_smtp_source}


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        with nullcontext(f"sqlite:///{directory}/outbox.db") as url:
            yield url
    else:
        with fresh_database("outbox_bench", over_socket=True) as url:
            yield url


def outbox_live(path: str, backend: str, count: int, sink: Sink, root: Path) -> Run:
    directory = Path(tempfile.mkdtemp(dir=root))
    with database(backend, directory) as url:
        config = outbox_config(directory, url, sink, smtp=path.startswith("smtp"))
        serve = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            assert serve.proc is not None
            before, cpu = sink.count(), cpu_seconds(serve.proc.pid)
            latencies: list[float] = []
            target = (config["submission"]["bind"] if path.startswith("smtp")
                      else serve.base_url)
            started = time.perf_counter()
            asyncio.run(LOADS[path](target, count, latencies))
            accepted = time.perf_counter()
            done = sink.wait_for(before + count)
            used = cpu_seconds(serve.proc.pid) - cpu
        except Exception:
            report_failure(serve, f"{path} {backend}")
            raise
        finally:
            serve.stop(timeout=30)
    return Run("outbox", path, backend, count / (done - started), count / (accepted - started),
               used * 1000 / count, latencies)


def report_failure(serve: OutboxProcess, run: str) -> None:
    """What serve left of a run that failed, before its directory goes: whether it still
    runs, its stderr and the end of its log (stop 41 lost a `ReadError`'s cause so)."""
    assert serve.proc is not None
    state = serve.proc.poll()
    log = serve.log_path.read_text(errors="replace")[-3000:] if serve.log_path.exists() else ""
    print(f"outbox {run} failed; serve {'still runs' if state is None else f'exited ({state})'}"
          f"\nserve's stderr:\n{serve.stderr_text()}\nthe end of serve's log:\n{log}",
          file=sys.stderr, flush=True)


@contextmanager
def filled(backend: str, count: int, sink: Sink, root: Path
           ) -> Iterator[tuple[str, dict[str, Any], OutboxProcess]]:
    """A fresh database with `count` messages queued in-process (nothing delivers
    meanwhile): its URL, the config, and a serve for it, not started (stopped after)."""
    directory = Path(tempfile.mkdtemp(dir=root))
    with database(backend, directory) as url:
        config = outbox_config(directory, url, sink, smtp=False)
        path = write_config(directory / "outbox.toml", config)
        asyncio.run(fill_queue(config, count, TEXT))
        serve = OutboxProcess(path, config)
        try:
            yield url, config, serve
        finally:
            if serve.proc is not None:
                serve.stop(timeout=30)


def outbox_drain(backend: str, count: int, sink: Sink, root: Path) -> Run:
    """The queue filled and held, serve started and ready, then the mail released."""
    with filled(backend, count, sink, root) as (url, _, serve):
        asyncio.run(hold_or_release(url, hold=True))
        before = sink.count()
        serve.start()  # ready: its delivery process too
        assert serve.proc is not None
        cpu = cpu_seconds(serve.proc.pid)
        started = asyncio.run(hold_or_release(url, hold=False))
        done = sink.wait_for(before + count)
        used = cpu_seconds(serve.proc.pid) - cpu
    return Run("outbox", "drain", backend, count / (done - started), 0.0, used * 1000 / count)


async def hold_or_release(url: str, *, hold: bool) -> float:
    """Hold every queued message for the relay, or release them (the instant the release
    began, for the timing); in this process, through the store, as the product does it:
    the relay marked as needing attention (what a refused login does), then marked ok
    (what a passing "test connection" or saved credentials do). Mail held for a relay
    marked ok would be released by each worker's round (relay_holds.py)."""
    store = await open_store(url)
    try:
        now = utcnow()
        version = (await store.relay_auth.load_relay_credentials("default")).version
        if hold:
            held = Event(now, EventType.HELD, detail="bench: held until the release")
            await store.relay_auth.hold_for_relay("default", version, "bench: held",
                                                  "bench", now, "bench", held)
        started = time.perf_counter()
        if not hold:
            await store.relay_auth.mark_ok("default", version, now)
        return started
    finally:
        await store.close()


def outbox_restart(backend: str, count: int, sink: Sink, root: Path) -> Run:
    """The queue filled, then serve started: timed from the start."""
    with filled(backend, count, sink, root) as (_, _, serve):
        before = sink.count()
        started = time.perf_counter()
        serve.start(wait=False)
        assert serve.proc is not None
        done = sink.wait_for(before + count)
        used = cpu_seconds(serve.proc.pid)
    return Run("outbox", "restart", backend, count / (done - started), 0.0,
               used * 1000 / count)


QUEUED = {"drain": outbox_drain, "restart": outbox_restart}  # paths that start full


# --- the table ----------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def report(reps: list[list[Run]]) -> None:
    print("\n| system | path | backend | " + " | ".join(f"rep {i + 1} msg/s (ratio)"
                                                      for i in range(len(reps)))
          + " | median ratio | accept msg/s | p50 / p99 / p99.9 ms | CPU s / 1,000 |")
    print("|---" * (7 + len(reps)) + "|")
    keys = list(dict.fromkeys((r.system, r.path, r.backend) for rep in reps for r in rep))
    for key in keys:
        cells, ratios, runs = [], [], []
        for rep in reps:
            run = next((r for r in rep if (r.system, r.path, r.backend) == key), None)
            anchor = next((r for r in rep if r.system == "postfix"
                           and r.path == ("drain" if key[1] in QUEUED else "live")), None)
            if run is None:
                cells.append("—")
                continue
            runs.append(run)
            if key[1] == "http-paced":  # the offered rate: no ratio
                cells.append(f"{run.rate:,.0f}")
                continue
            ratio = run.rate / anchor.rate if anchor and anchor.rate else 0.0
            ratios.append(ratio)
            cells.append(f"{run.rate:,.0f} ({ratio:.2f})")
        latencies = [v for r in runs for v in r.latencies]
        lat = (" / ".join(f"{percentile(latencies, q) * 1000:.0f}" for q in (0.5, 0.99, 0.999))
               if latencies else "—")
        accept = statistics.median(r.accept for r in runs) if runs else 0.0
        cpu = statistics.median(r.cpu_per_1000 for r in runs) if runs else -1.0
        print(f"| {key[0]} | {key[1]} | {key[2] or '—'} | " + " | ".join(cells)
              + f" | {f'{statistics.median(ratios):.2f}' if ratios else '—'} | {accept:,.0f} "
              f"| {lat} "
              f"| {f'{cpu:.2f}' if cpu >= 0 else '—'} |")


def cpu_probe() -> str:
    """Milliseconds for one fixed piece of pure Python, three times: how fast a core runs
    Python right now. Here the same code's CPU per message rose 1.6-fold within an hour
    (an A/B of two commits, interleaved, saw no difference between them) while the
    hypervisor reported no steal: runs taken at different times compare only beside it."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        times.append(f"{(time.perf_counter() - started) * 1000:.0f}")
    # Which build ran it: the same code took 13-19 % less CPU per message on Debian's
    # CPython than on pyenv's, on one machine (docs/operations.md, "Which Python").
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return (f"python probe ms: {' '.join(times)} ({base}, {platform.python_version()}); "
            f"{handover_probe()}")


def handover_probe(round_trips: int = 20_000) -> str:
    """Microseconds of wall and CPU time for one round trip between two Python threads
    over `queue.SimpleQueue`: what waking another thread costs here. Outbox hands each
    write to a writer thread and back, in each process. On stop 49's machine Python ran
    faster than on stop 47's (probe 28-33 ms) but a round trip took 26-36 us wall and
    16-24 us CPU, and Outbox spent 1.4-1.7 times the CPU per message (http-lean on
    SQLite, three `make bench` runs). The first few thousand trips cost twice as much
    there (the threads start from idle): 20,000 take about half a second."""
    there: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    back: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) is not None:
            back.put(item)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(round_trips):
        there.put(n)
        back.get()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    there.put(None)
    thread.join()
    return (f"thread hand-over us: {wall / round_trips * 1e6:.0f} wall, "
            f"{cpu / round_trips * 1e6:.0f} CPU")


def noise(since: CpuTimes | None = None) -> str:
    """Load, an fsync probe, a Python probe and, given the reading at the start, the share
    of CPU time the hypervisor took since (bench/cpu_steal.py)."""
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    probe = ANCHORS / "05_fsync_probe.py"
    fsync = (subprocess.run([sys.executable, str(probe), tempfile.gettempdir()],
                            capture_output=True, text=True, timeout=120).stdout.strip()
             if probe.exists() else "fsync probe: ../shared/bench-anchors not found")
    machine = f"; over the run: {shares(since, cpu_times())}" if since else ""
    return f"noise: {os.cpu_count()} cores, load average {load}; {fsync}; {cpu_probe()}{machine}"


def main() -> None:
    global DELIVERY_PROCESSES, PACED_RATE
    # The clients' own full collections (60 ms here, over the imports) would count as
    # server latency; serve freezes its start-up objects the same way (runtime/heap.py).
    gc.freeze()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--paths",
                        default="http,http-lean,batch,smtp,smtp-source,drain,restart")
    parser.add_argument("--delivery-processes", type=parse_process_count, default="auto",
                        help="[delivery] processes of outbox serve (0: deliver in serve; "
                        "auto, the default: two on two cores or more)")
    parser.add_argument("--paced-rate", type=float, default=PACED_RATE,
                        help="messages a second in all on the http-paced path")
    args = parser.parse_args()
    DELIVERY_PROCESSES, PACED_RATE = args.delivery_processes, args.paced_rate
    if not Path("/usr/sbin/smtp-sink").exists():
        raise SystemExit("smtp-sink is missing: run `bash scripts/bench-deps.sh` (make bench)")
    if not ANCHORS.exists():
        print(f"note: {ANCHORS} not found; Postfix rows are left out", flush=True)
    print(noise(), flush=True)
    started = cpu_times()
    reps: list[list[Run]] = []
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink = Sink(root)
        stack.callback(sink.stop)
        for rep in range(args.reps):
            # How fast a core ran Python as the rep began: here it drifted two-fold within
            # minutes, and a rep's ratio moves with it (Postfix waits on fsync, Outbox on
            # the CPU).
            print(f"rep {rep + 1}: {cpu_probe()}", flush=True)
            runs: list[Run] = []
            for mode in ("live", "drain"):
                anchor = postfix(mode, args.messages, root)
                runs += [anchor] if anchor else []
            for backend in args.backends.split(","):
                for path in args.paths.split(","):
                    run = (QUEUED[path](backend, args.messages, sink, root) if path in QUEUED
                           else outbox_live(path, backend, args.messages, sink, root))
                    runs.append(run)
                    print(f"rep {rep + 1}: outbox {path} {backend}: {run.rate:,.0f} msg/s",
                          flush=True)
            reps.append(runs)
    report(reps)
    print(noise(started))


if __name__ == "__main__":
    main()
