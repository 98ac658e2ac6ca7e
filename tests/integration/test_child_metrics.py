"""What delivery processes count reaches serve's /metrics: each child (a real process,
started with `MULTIPROCESS_ENV` as serve starts them) keeps its counters in files,
and `Combined` adds them to serve's own, one family per name, also after the child
ended."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from outbox.observability import MULTIPROCESS_ENV, ChildMetrics, Combined, DeliveryMetrics

CHILD = """
import sys
from outbox.observability import DeliveryMetrics
from outbox.supervision import Loops
loops = Loops()
metrics = DeliveryMetrics(loops.registry)
metrics.observe("default", {"sent": int(sys.argv[1]), "deferred": 1}, 0.03)
loops.register("claims").failed(RuntimeError("database is locked"))
"""


def run_child(directory: Path, sent: int) -> None:
    subprocess.run([sys.executable, "-c", CHILD, str(sent)], check=True, timeout=60,
                   env={**os.environ, MULTIPROCESS_ENV: str(directory)})


def scrape(registry: CollectorRegistry) -> tuple[str, dict[tuple[str, tuple], float]]:
    text = generate_latest(Combined(registry)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def test_serve_shows_its_own_counts_plus_its_children_s(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    own = DeliveryMetrics(registry)
    own.observe("default", {"sent": 1}, 0.2)
    registry.register(ChildMetrics(tmp_path))
    run_child(tmp_path, sent=2)

    text, samples = scrape(registry)
    sent = ("outbox_deliveries_total", (("relay", "default"), ("result", "sent")))
    deferred = ("outbox_deliveries_total", (("relay", "default"), ("result", "deferred")))
    assert samples[sent] == 3 and samples[deferred] == 1
    count = ("outbox_attempt_duration_seconds_count", (("relay", "default"),))
    assert samples[count] == 2

    def bucket(le: str) -> float:
        return samples[("outbox_attempt_duration_seconds_bucket",
                        (("le", le), ("relay", "default")))]
    assert (bucket("0.025"), bucket("0.05"), bucket("0.25"), bucket("+Inf")) == (0, 1, 2, 2)
    # Prometheus takes each family once: two `# TYPE` lines for one name are refused.
    assert text.count("# TYPE outbox_deliveries_total counter") == 1
    assert text.count("# TYPE outbox_attempt_duration_seconds histogram") == 1


def test_what_an_ended_child_counted_stays_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(ChildMetrics(tmp_path))
    run_child(tmp_path, sent=2)
    run_child(tmp_path, sent=5)  # a restarted delivery process: a new pid, a new file

    _, samples = scrape(registry)
    assert samples[("outbox_deliveries_total", (("relay", "default"), ("result", "sent")))] == 7
    loop_errors = [value for (name, _), value in samples.items()
                   if name == "outbox_loop_errors_total"]
    assert loop_errors == [2]


def test_no_children_yet_shows_serve_s_own(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    DeliveryMetrics(registry).observe("default", {"sent": 4}, 0.2)
    registry.register(ChildMetrics(tmp_path))
    _, samples = scrape(registry)
    assert samples[("outbox_deliveries_total", (("relay", "default"), ("result", "sent")))] == 4


GONE = """
import shutil, sys
from outbox.observability import DeliveryMetrics
metrics = DeliveryMetrics()
shutil.rmtree(sys.argv[1])  # the directory gone before the first attempt (tmp cleaners)
metrics.observe("default", {"sent": 1}, 0.03)
metrics.observe("default", {"sent": 1}, 0.03)
print("delivered on")
"""


def test_a_child_whose_metric_files_are_gone_delivers_on(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    done = subprocess.run([sys.executable, "-c", GONE, str(directory)], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, MULTIPROCESS_ENV: str(directory)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("delivered on")
    # One line, not one per attempt.
    assert done.stdout.count("cannot count deliveries in /metrics") == 1
