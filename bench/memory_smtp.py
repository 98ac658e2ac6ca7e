"""Memory of a large message through SMTP submission into a real `outbox serve`
(issue 15: bench/memory.py's measure for the SMTP path).

    .venv/bin/python bench/memory_smtp.py [--size 100000000] [--database-url URL|postgres]

Starts the sink (`tests/smtpd.py`) and `outbox serve` with a submission listener on
127.0.0.1 that takes mail from 127.0.0.1 without AUTH (`trusted_networks`), with
`[limits] max_message_size` twice --size. Warms it up with a small message, then
sends one message with a random --size byte attachment (base64 in a MIME message,
about 1.37 times --size on the wire) over one SMTP session (smtplib, the whole
message in the client) and waits until it is sent. The RSS of serve and of serve
with every process under it (its delivery and planning processes) is sampled every
few milliseconds (psutil): the report gives each one's peak growth over the warmed-up
baseline while the message is taken (until the 250 after DATA) and while it is
delivered. The target is bench/memory.py's for an upload (SPEC §4): a peak growth
under 32 MB.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import smtplib
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg import fresh_database  # noqa: E402
from tests.processes import free_port  # noqa: E402

from bench.memory import (  # noqa: E402
    API_KEY,
    MB,
    RssSampler,
    _stop,
    sink_counts,
    start_outbox,
    start_sink,
    wait_sent,
)


class TreeSampler(RssSampler):
    """Samples the RSS of a process, alone and with every process under it."""

    def sample(self) -> tuple[int, int]:
        own = self._process.memory_info().rss
        children = 0
        for child in self._process.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # ended meanwhile
                children += child.memory_info().rss
        return own, own + children

    def both(self, since: float, until: float) -> tuple[int, int]:
        """The peak of each, over a phase."""
        window = [value for at, value in list(self._samples) if since <= at <= until]
        return (max((own for own, _ in window), default=0),
                max((tree for _, tree in window), default=0))


def mime_message(size: int) -> bytes:
    """A text part and a --size byte random attachment, base64 in 76-character lines."""
    encoded = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return (b"From: bench@example.test\r\nTo: sink@example.test\r\n"
            b"Subject: memory bench over SMTP\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b0undary"\r\n\r\n'
            b"--b0undary\r\nContent-Type: text/plain\r\n\r\na large attachment\r\n"
            b"--b0undary\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; '
            b'filename="big.bin"\r\n\r\n' + encoded + b"--b0undary--\r\n")


def submit(submission: str, message: bytes) -> str:
    """The message over one session; the queue id from the 250 after DATA."""
    host, port = submission.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=600) as smtp:
        smtp.ehlo("bench.test")
        smtp.mail("bench@example.test")
        smtp.rcpt("sink@example.test")
        code, reply = smtp.data(message)
    if code != 250:
        raise RuntimeError(f"DATA answered {code} {reply!r}")
    return reply.decode().split("queued as ", 1)[1].split()[0]


def run(size: int, url: str | None, directory: Path) -> dict[str, Any]:
    sink, sink_port, counts = start_sink(directory, "smtpd")
    with ExitStack() as stack:
        stack.callback(_stop, sink)
        db_url = stack.enter_context(nullcontext(url or f"sqlite:///{directory}/outbox.db"))
        submission = f"127.0.0.1:{free_port()}"
        proc, base = start_outbox(directory, db_url, "filesystem", sink_port, size,
                                  submission={"bind": submission, "security": "none",
                                              "trusted_networks": ["127.0.0.1/32"],
                                              "trusted_key": "bench"})
        stack.callback(_stop, proc)
        client = stack.enter_context(httpx.Client(
            base_url=base, timeout=600, headers={"Authorization": f"Bearer {API_KEY}"}))
        wait_sent(client, submit(submission, mime_message(1000)))  # warm up every path
        message = mime_message(size)
        with TreeSampler(proc.pid) as rss:
            time.sleep(0.3)
            now = time.monotonic()
            baseline = tuple(max(a, b) for a, b in zip(rss.sample(), rss.both(now - 0.3, now),
                                                       strict=True))
            t0 = time.monotonic()
            id = submit(submission, message)
            t1 = time.monotonic()
            wait_sent(client, id)
            t2 = time.monotonic()
            time.sleep(0.2)
        taken, delivered = rss.both(t0, t1), rss.both(t1, t2)
        received = sink_counts(counts)  # written every half second: wait for this message's
        settle = time.monotonic() + 3
        while received.get("messages", 0) < 2 and time.monotonic() < settle:
            time.sleep(0.1)
            received = sink_counts(counts)
        return {"size": size, "wire": len(message), "baseline": baseline,
                "taken": [p - b for p, b in zip(taken, baseline, strict=True)],
                "delivered": [p - b for p, b in zip(delivered, baseline, strict=True)],
                "taken_s": t1 - t0, "delivered_s": t2 - t1, "samples": rss.count,
                "sink_messages": received.get("messages")}
    raise AssertionError("unreachable")


def report(result: dict[str, Any], backend: str) -> None:
    mib = 1024 * 1024
    print(f"{backend}: a {result['size'] / MB:.0f} MB attachment ({result['wire'] / MB:.1f} MB "
          f"on the wire) through SMTP submission ({result['samples']} RSS samples)")
    print(f"  baseline RSS, serve / with its processes    "
          f"{result['baseline'][0] / mib:7.1f} / {result['baseline'][1] / mib:7.1f} MiB")
    for phase, label in (("taken", "taken (to the 250)  "), ("delivered", "delivered (to sent)")):
        own, tree = result[phase]
        print(f"  {label} peak growth    {own / mib:7.1f} / {tree / mib:7.1f} MiB   "
              f"in {result[phase + '_s']:.1f} s")
    peak = max(*result["taken"], *result["delivered"])
    verdict = "OK" if peak < 32 * MB else "OVER THE 32 MB TARGET"
    print(f"  peak growth {peak / MB:.1f} MB: {verdict}; the sink got "
          f"{result['sink_messages']} messages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100 * MB)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory; "
                        "'postgres' makes a throw-away PostgreSQL database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outbox-memory-smtp-") as tmp, ExitStack() as stack:
        url = args.database_url
        if url == "postgres":
            url = stack.enter_context(fresh_database("outbox_bench"))
        report(run(args.size, url, Path(tmp)), "PostgreSQL" if url else "SQLite")


if __name__ == "__main__":
    main()
