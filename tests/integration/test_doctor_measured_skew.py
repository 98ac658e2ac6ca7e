"""`outbox doctor` reports the clock skew delivery measured (issue 14, first day):
a worker whose clock is 400 s ahead measures it against PostgreSQL's clock at
every sweep and keeps the reading in the store, and doctor, run elsewhere with a
correct clock, fails its clock check naming that worker, instead of passing on
its own clock alone."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.pg import fresh_database

from outbox.clock import DatabaseClock, utcnow
from outbox.config import Settings
from outbox.ops.checks import Status
from outbox.service import Outbox
from outbox.service.diagnostics import doctor

SKEW = timedelta(seconds=400)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def skewed_wall() -> datetime:
    return utcnow() + SKEW


async def test_doctor_reports_the_skew_a_worker_measured_against_the_database(
        pg_url: str, tmp_path: Path) -> None:
    settings = Settings(database={"url": pg_url}, delivery={"poll_interval": "50ms"},
                        doctor={"min_free_disk": "1MB"},
                        logging={"file": str(tmp_path / "outbox.log")})
    before = await doctor(settings)  # nothing measured yet: doctor's own clock agrees
    (check,) = [c for c in before.checks if c.name == "clock skew"]
    assert check.status is Status.PASS, check

    opened = await Outbox.open(settings)
    skewed = Outbox(settings, opened.store, clock=DatabaseClock(wall=skewed_wall))
    worker = skewed.start_delivery()
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 30
        while not await skewed.store.alerts.clock_readings(utcnow() - timedelta(minutes=1)):
            assert time.monotonic() < deadline, "the worker never recorded its clock reading"
            await asyncio.sleep(0.05)
        assert abs(skewed.clock() - utcnow()) < timedelta(seconds=5), "it runs on the DB's time"
    finally:
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        await skewed.close()

    report = await doctor(settings)
    (check,) = [c for c in report.checks if c.name == "clock skew"]
    assert check.status is Status.FAIL, check  # over 5 minutes: TLS and OAuth2 break
    assert check.detail.startswith(f"delivery on {socket.gethostname()} (measured ")
    seconds = float(check.detail.split(" is ")[1].split("s ahead of the database server")[0])
    assert 395 <= seconds <= 405, check.detail
    assert "NTP" in check.fix or "time" in check.fix
