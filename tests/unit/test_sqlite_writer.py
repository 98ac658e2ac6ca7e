"""store/sqlite_writer.py: urgent writes go before the others still waiting; each kind
keeps its order; a failure reaches its caller; shutdown runs what waits."""

from __future__ import annotations

import threading

import pytest

from outbox.store.sqlite_writer import WriterThread


def test_an_urgent_write_waits_only_for_the_one_under_way() -> None:
    writer = WriterThread("test-writer")
    ran: list[str] = []
    started, release = threading.Event(), threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(5)
        ran.append("under way")

    first = writer.submit(blocking)
    assert started.wait(5)
    queued = [writer.submit(lambda n=n: ran.append(n)) for n in ("claim", "record")]
    urgent = [writer.submit(lambda n=n: ran.append(n), urgent=True) for n in ("a", "b")]
    release.set()
    for future in (first, *queued, *urgent):
        future.result(5)
    writer.shutdown()

    assert ran == ["under way", "a", "b", "claim", "record"]


def test_a_failure_reaches_its_caller_and_the_thread_goes_on() -> None:
    writer = WriterThread("test-writer")

    def broken() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        writer.submit(broken).result(5)
    assert writer.submit(lambda: 42).result(5) == 42
    writer.shutdown()


def test_shutdown_runs_what_waits_then_refuses_more() -> None:
    writer = WriterThread("test-writer")
    ran: list[int] = []
    futures = [writer.submit(lambda n=n: ran.append(n)) for n in range(20)]
    writer.shutdown()
    assert all(f.done() for f in futures) and ran == list(range(20))
    with pytest.raises(RuntimeError):
        writer.submit(lambda: None)


def test_no_thread_until_the_first_write() -> None:
    before = {t.name for t in threading.enumerate()}
    writer = WriterThread("test-writer-lazy")
    assert "test-writer-lazy" not in {t.name for t in threading.enumerate()} - before
    writer.shutdown()
