"""Memory and throughput of a 100 MB attachment through a real `outbox serve`.

    .venv/bin/python bench/memory.py [--size 100000000] [--database-url URL|postgres]
                                     [--blobs filesystem|database] [--sink smtpd|discard]
                                     [--dkim]

Starts the sink in its own process (`tests/smtpd.py`, which keeps each message
in memory to count it, or with --sink discard a minimal one that only looks for
the final dot) and `outbox serve` (SQLite in a
temporary directory unless --database-url is given), warms it up with a small
message, then streams a random file of --size bytes to POST /v1/uploads and sends
it as an attachment. The RSS of the `outbox serve` process is sampled from /proc
(psutil) every few milliseconds throughout; the report gives its growth over the
warmed-up baseline for the upload and for the delivery, and the throughput of each.
Target (SPEC §4): peak growth under 32 MB. With --dkim, [dkim] has an RSA 2048 and an
Ed25519 key for the sender's domain (dual signing, the body hashed while it streams).

    .venv/bin/python bench/memory.py --concurrent 10 [--json-size 20000000]

Concurrent mode (issue 17): `outbox serve` at the default [limits]; --concurrent
clients each POST /v1/messages a JSON body of --json-size bytes (one base64
attachment) at the same time. Reports the peak RSS growth while they are accepted,
then while they are delivered, and what is left after. Target: < 200 MB.
Run it with PYTHONPATH=<other checkout>/src to compare another version.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg import fresh_database  # noqa: E402
from tests.processes import OUTBOX, free_port, write_config  # noqa: E402

API_KEY = "ob_bench_memory_key_000"
MB = 1_000_000
PIECE = 1024 * 1024


class RssSampler:
    """Samples one process's RSS in a thread; `peak(since)` over a phase."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._samples: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._samples.append((time.monotonic(), self.sample()))
            time.sleep(self._interval)

    def sample(self) -> Any:
        """One reading: the RSS."""
        return self._process.memory_info().rss

    def now(self) -> int:
        return int(self._process.memory_info().rss)

    def peak(self, since: float, until: float) -> int:
        return max((rss for at, rss in list(self._samples) if since <= at <= until), default=0)

    @property
    def count(self) -> int:
        return len(self._samples)


def start_sink(directory: Path, kind: str) -> tuple[subprocess.Popen[str], int, Path]:
    counts = directory / "sink.json"
    command = ([str(REPO / "tests" / "smtpd.py"), "--port", "0"] if kind == "smtpd"
               else [__file__, "--run-discard-sink"])
    proc = subprocess.Popen([sys.executable, *command, "--count-file", str(counts)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().rsplit(":", 1)[1]), counts


class DiscardSink(asyncio.Protocol):
    """Answers SMTP and throws the message away, keeping only its length."""

    REPLIES = {b"EHLO": b"250-sink\r\n250 8BITMIME\r\n", b"DATA": b"354 go on\r\n",
               b"QUIT": b"221 bye\r\n"}

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats
        self.in_data = False
        self.tail = b""
        self.line = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 discard sink\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.in_data:
            self.stats["bytes"] += len(data)
            seen = self.tail + data
            if b"\r\n.\r\n" in seen:
                self.in_data, self.tail = False, b""
                self.stats["messages"] += 1
                self.transport.write(b"250 2.0.0 OK\r\n")
            else:
                self.tail = seen[-4:]
            return
        self.line += data
        while b"\r\n" in self.line:
            command, self.line = self.line.split(b"\r\n", 1)
            verb = command[:4].upper()
            self.transport.write(self.REPLIES.get(verb, b"250 OK\r\n"))
            self.in_data = verb == b"DATA"


async def serve_discard_sink(count_file: str) -> None:
    stats = {"messages": 0, "bytes": 0}
    server = await asyncio.get_running_loop().create_server(lambda: DiscardSink(stats),
                                                            "127.0.0.1", 0)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    while True:
        Path(count_file).write_text(json.dumps(stats))
        await asyncio.sleep(0.1)


def sink_counts(path: Path) -> dict[str, int]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def dkim_keys(directory: Path) -> dict[str, Any]:
    """[dkim]: an RSA 2048 and an Ed25519 key for example.test, as files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    keys = []
    for name, key in (("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("ed25519", ed25519.Ed25519PrivateKey.generate())):
        path = directory / f"dkim-{name}.pem"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        keys.append({"domain": "example.test", "selector": name,
                     "algorithm": f"{name}-sha256", "private_key": f"file:{path}"})
    return {"keys": keys}


def start_outbox(directory: Path, url: str, blobs: str, sink_port: int,
                 size: int | None, dkim: bool = False,
                 submission: dict[str, Any] | None = None
                 ) -> tuple[subprocess.Popen[bytes], str]:
    """`outbox serve`, ready; `submission`: its [submission] (bench/memory_smtp.py)."""
    bind = f"127.0.0.1:{free_port()}"
    config = {
        "server": {"bind": bind},
        "database": {"url": url},
        "logging": {"level": "warning", "file": str(directory / "outbox.log")},
        "auth": {"api_keys": [{"name": "bench", "key": API_KEY, "scopes": ["send", "read"]}]},
        "limits": {"max_message_size": size * 2, "max_attachment_size": size + MB} if size
        else {},  # None: the defaults
        "storage": {"blobs": blobs, "blob_dir": str(directory / "blobs")},
        "delivery": {"poll_interval": "50ms", "helo_name": "bench.test",
                     "data_timeout": "10m"},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": sink_port,
                    "security": "none"}],
    }
    if dkim:
        config["dkim"] = dkim_keys(directory)
    if submission:
        config["submission"] = submission
    path = write_config(directory / "outbox.toml", config)
    stderr = open(directory / "outbox.stderr", "wb")  # noqa: SIM115 (lives with the process)
    proc = subprocess.Popen([*OUTBOX, "serve", "--config", str(path)], stdout=stderr,
                            stderr=stderr, cwd=directory)
    base = f"http://{bind}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError((directory / "outbox.stderr").read_text())


def write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = min(PIECE, left)
            handle.write(os.urandom(piece))
            left -= piece


def file_pieces(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while piece := handle.read(PIECE):
            yield piece


def send(client: httpx.Client, upload_id: str | None = None,
         base64_data: str | None = None) -> dict[str, Any]:
    attachment: dict[str, Any] = {"filename": "big.bin"}
    if upload_id:
        attachment["upload_id"] = upload_id
    else:
        attachment["content_base64"] = base64_data or ""
    response = client.post("/v1/messages", json={
        "from": "bench@example.test", "to": "sink@example.test", "subject": "memory bench",
        "text": "a large attachment", "attachments": [attachment]})
    response.raise_for_status()
    return dict(response.json())


def wait_sent(client: httpx.Client, id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/messages/{id}").json()["status"]
        if status == "sent":
            return
        if status in ("failed", "held", "cancelled"):
            raise RuntimeError(f"message {id} ended {status}")
        time.sleep(0.02)
    raise RuntimeError(f"message {id} not sent in {timeout}s")


def run(size: int, url: str | None, blobs: str, sink_kind: str,
        directory: Path, dkim: bool = False) -> dict[str, Any]:
    sink, sink_port, counts = start_sink(directory, sink_kind)
    with ExitStack() as stack:
        stack.callback(_stop, sink)
        database = nullcontext(url) if url else (
            nullcontext(f"sqlite:///{directory}/outbox.db"))
        db_url = stack.enter_context(database)
        proc, base = start_outbox(directory, db_url, blobs, sink_port, size, dkim)
        stack.callback(_stop, proc)
        client = stack.enter_context(httpx.Client(
            base_url=base, timeout=600, headers={"Authorization": f"Bearer {API_KEY}"}))
        wait_sent(client, send(client, base64_data="aGVsbG8=")["id"])  # warm up every path
        source = directory / "source.bin"
        write_random_file(source, size)
        return measure(client, proc.pid, source, size, counts)
    raise AssertionError("unreachable")


def measure(client: httpx.Client, pid: int, source: Path, size: int,
            counts: Path) -> dict[str, Any]:
    with RssSampler(pid) as rss:
        time.sleep(0.3)
        baseline = max(rss.now(), rss.peak(time.monotonic() - 0.3, time.monotonic()))
        t0 = time.monotonic()
        upload = client.post("/v1/uploads", content=file_pieces(source)).json()
        t1 = time.monotonic()
        accepted = send(client, upload_id=upload["upload_id"])
        wait_sent(client, accepted["id"])
        t2 = time.monotonic()
        time.sleep(0.2)
    received = sink_counts(counts)
    # The sink writes its counts every half second: wait for the one that has this
    # message too (the warm-up's is the first), not the one before it.
    settle = time.monotonic() + 3
    while received.get("messages", 0) < 2 and time.monotonic() < settle:
        time.sleep(0.1)
        received = sink_counts(counts)
    return {
        "size": size, "baseline_rss": baseline,
        "upload_peak_growth": rss.peak(t0, t1) - baseline,
        "delivery_peak_growth": rss.peak(t1, t2) - baseline,
        "upload_mb_s": size / MB / (t1 - t0),
        "delivery_mb_s": size / MB / (t2 - t1),
        "samples": rss.count, "sink_messages": received.get("messages"),
        "sink_bytes": received.get("bytes"), "sha256_ok": upload["size"] == size,
    }


def run_concurrent(clients: int, json_size: int, sink_kind: str,
                   directory: Path) -> dict[str, Any]:
    sink, sink_port, counts = start_sink(directory, sink_kind)
    with ExitStack() as stack:
        stack.callback(_stop, sink)
        proc, base = start_outbox(directory, f"sqlite:///{directory}/outbox.db", "filesystem",
                                  sink_port, None)
        stack.callback(_stop, proc)
        client = stack.enter_context(httpx.Client(
            base_url=base, timeout=600, headers={"Authorization": f"Bearer {API_KEY}"}))
        wait_sent(client, send(client, base64_data="aGVsbG8=")["id"])  # warm up every path
        file_size = (json_size - 300) * 3 // 4
        body = json.dumps({"from": "bench@example.test", "to": "sink@example.test",
                           "subject": "memory bench", "text": "a large attachment",
                           "attachments": [{"filename": "big.bin", "content_base64":
                                            base64.b64encode(os.urandom(file_size)).decode()}]
                           }).encode()
        return measure_concurrent(client, proc.pid, body, clients, counts)
    raise AssertionError("unreachable")


def measure_concurrent(client: httpx.Client, pid: int, body: bytes, clients: int,
                       counts: Path) -> dict[str, Any]:
    def post(_: int) -> str:
        response = client.post("/v1/messages", content=body,
                               headers={"Content-Type": "application/json"})
        response.raise_for_status()
        return str(response.json()["id"])

    with RssSampler(pid) as rss:
        time.sleep(0.3)
        baseline = max(rss.now(), rss.peak(time.monotonic() - 0.3, time.monotonic()))
        t0 = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            ids = list(pool.map(post, range(clients)))
        t1 = time.monotonic()
        for id in ids:
            wait_sent(client, id)
        t2 = time.monotonic()
        time.sleep(1.0)
        after = rss.now()
    return {"clients": clients, "json_size": len(body), "baseline_rss": baseline,
            "accept_peak_growth": rss.peak(t0, t1) - baseline,
            "delivery_peak_growth": rss.peak(t1, t2) - baseline,
            "left_after": after - baseline, "accept_s": t1 - t0, "delivery_s": t2 - t1,
            "sink_messages": sink_counts(counts).get("messages")}


def report_concurrent(result: dict[str, Any]) -> None:
    peak = max(result["accept_peak_growth"], result["delivery_peak_growth"])
    verdict = "OK" if peak < 200 * MB else "OVER TARGET"
    print(f"{result['clients']} concurrent submits of {result['json_size'] / MB:.1f} MB JSON "
          f"(one base64 attachment each), SQLite, filesystem blobs")
    print(f"  baseline RSS            {result['baseline_rss'] / MB:8.1f} MB")
    print(f"  accept   peak growth    {result['accept_peak_growth'] / MB:8.1f} MB   "
          f"in {result['accept_s']:.1f} s")
    print(f"  delivery peak growth    {result['delivery_peak_growth'] / MB:8.1f} MB   "
          f"in {result['delivery_s']:.1f} s")
    print(f"  left after              {result['left_after'] / MB:8.1f} MB")
    print(f"  peak RSS growth {peak / MB:.1f} MB (target < 200 MB): {verdict}; the sink got "
          f"{result['sink_messages']} messages")


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def report(result: dict[str, Any], label: str) -> None:
    mib = 1024 * 1024
    peak = max(result["upload_peak_growth"], result["delivery_peak_growth"])
    verdict = "OK" if peak < 32 * MB else "OVER TARGET"
    print(f"{label}: {result['size'] / MB:.0f} MB attachment through outbox serve "
          f"({result['samples']} RSS samples)")
    print(f"  baseline RSS          {result['baseline_rss'] / mib:8.1f} MiB")
    print(f"  upload   peak growth  {result['upload_peak_growth'] / mib:8.1f} MiB   "
          f"{result['upload_mb_s']:7.1f} MB/s")
    print(f"  delivery peak growth  {result['delivery_peak_growth'] / mib:8.1f} MiB   "
          f"{result['delivery_mb_s']:7.1f} MB/s (upload_id to sent, base64 on the wire)")
    print(f"  peak RSS growth {peak / MB:.1f} MB (target < 32 MB): {verdict}; the sink got "
          f"{result['sink_messages']} messages, {result['sink_bytes'] or 0:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100 * MB)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory; "
                        "'postgres' makes a throw-away PostgreSQL database")
    parser.add_argument("--blobs", choices=["filesystem", "database"], default="filesystem")
    parser.add_argument("--sink", choices=["smtpd", "discard"], default="smtpd")
    parser.add_argument("--concurrent", type=int, default=0, help="clients posting large "
                        "JSON bodies at once (issue 17 mode)")
    parser.add_argument("--json-size", type=int, default=20 * MB)
    parser.add_argument("--dkim", action="store_true", help="sign with an RSA and an "
                        "Ed25519 key (dual signing)")
    parser.add_argument("--run-discard-sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_discard_sink:
        asyncio.run(serve_discard_sink(args.count_file))
        return
    if args.concurrent:
        with tempfile.TemporaryDirectory(prefix="outbox-memory-") as tmp:
            report_concurrent(run_concurrent(args.concurrent, args.json_size, args.sink,
                                             Path(tmp)))
        return
    with tempfile.TemporaryDirectory(prefix="outbox-memory-") as tmp, ExitStack() as stack:
        url = args.database_url
        if url == "postgres":
            url = stack.enter_context(fresh_database("outbox_bench"))
        backend = "PostgreSQL" if url else "SQLite"
        result = run(args.size, url, args.blobs, args.sink, Path(tmp), args.dkim)
        signed = ", DKIM rsa+ed25519" if args.dkim else ""
        report(result, f"{backend}, {args.blobs} blobs, {args.sink} sink{signed}")


if __name__ == "__main__":
    main()
