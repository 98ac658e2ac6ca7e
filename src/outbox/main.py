"""The `outbox` console entry point: the CLI plus the long-running processes.

`serve`, `worker` and `submission` start through `outbox.runtime`, which imports the HTTP
API; they are added here, above both, so `outbox.cli` and `outbox.api` never import each
other. The runtime loads only when one of them runs, so `outbox --help` stays fast.
"""

from __future__ import annotations

from outbox.cli.app import build_app
from outbox.cli.common import ConfigOption, load, run


def serve(config: ConfigOption = None) -> None:
    """HTTP API, metrics and delivery workers (and SMTP submission when submission.bind is
    set); delivery runs in processes serve starts and stops, two by default where serve
    may use two cores ([delivery] processes)."""
    from outbox.event_loop import run as run_loop
    from outbox.runtime import run_serve_process

    run_loop(run_serve_process(load(config), config))


def worker(config: ConfigOption = None) -> None:
    """Delivery workers only, for extra nodes sharing the database."""
    from outbox.event_loop import run as run_loop
    from outbox.runtime import run_worker_process

    run_loop(run_worker_process(load(config)))


def submission(config: ConfigOption = None) -> None:
    """The SMTP submission listener only (submission.bind), for extra nodes."""
    from outbox.event_loop import run as run_loop
    from outbox.runtime import run_submission_process

    run_loop(run_submission_process(load(config)))


app = build_app(serve, worker, submission)


def main() -> None:
    """Run `outbox`; expected errors end as one line on stderr and a non-zero exit."""
    run(app)
