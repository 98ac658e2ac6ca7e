"""Start `outbox` processes by fork from a process that has already imported Outbox.

Every `outbox serve` a test starts spends 1.5-2 s of CPU importing the same modules
before it does anything (more on a loaded two-core machine, where four test workers do
it at once). A zygote imports them once per test worker; each start is then a
`fork()` that runs `outbox.main.main()` with the test's arguments, environment,
working directory and log file, in a session of its own, as `python -m outbox` would.

What stays real: each `outbox` is its own process with its own pid, killed with the
signals the tests send (kill -9 included), running Outbox's code from its entry point,
against real servers. What differs from an exec: the imports happened before the fork
(so module-level state is the zygote's: `random` is reseeded in the child). Tests of
start-up time itself (recovery within 10 s of a restart) and of a different program or
wrapper (faketime, an installed wheel) use a real exec: `OutboxProcess(forked=False)`.

Protocol: one JSON line per request on the zygote's stdin, one JSON line back on its
stdout. {"argv", "env", "cwd", "out", "err", "status"} forks and answers {"pid"}; the
zygote reaps its children and writes each exit status (as `subprocess` reports it:
-N for a signal) to the request's "status" file. EOF on stdin ends the zygote.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import gc
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# What `outbox serve` imports on its way to answering /healthz and delivering, on either
# backend: the entry points, then what they import lazily (the CLI imports little so that
# short commands start fast; a serve started from here would otherwise still spend about
# 0.2 s of CPU on these at every start).
PRELOAD = ("outbox.main", "outbox.cli.app", "outbox.runtime", "outbox.runtime.http",
           "outbox.delivery.pool", "outbox.delivery.gate", "outbox.delivery.webhook_http",
           "outbox.service.webhook_dispatch", "outbox.store.sqlite", "outbox.store.postgres",
           "outbox.store.liveness", "outbox.worker.attempt", "alembic.command", "alembic.config",
           "alembic.runtime.migration", "alembic.script", "sqlalchemy.dialects.sqlite",
           "sqlalchemy.dialects.postgresql.asyncpg", "asyncpg", "anyio._backends._asyncio",
           "uvicorn.lifespan.on", "uvicorn.lifespan.off", "uvicorn.protocols.websockets.auto",
           "uvicorn.protocols.http.auto", "encodings.idna")


def _child(request: dict[str, Any], ready: int) -> None:
    """In the forked child: become `python -m outbox ARGV` and never return. `ready`
    hears one byte once the child leads its own session, so that the test's killpg(pid)
    cannot come before it."""
    code = 1
    try:
        os.setsid()
        os.write(ready, b"1")
        os.close(ready)
        # The dispositions a fresh `python` starts with (it ignores SIGPIPE, so a write
        # to a closed socket is an error, not death; Ctrl-C is KeyboardInterrupt).
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stdin = os.open(os.devnull, os.O_RDONLY)
        if request.get("stdin"):
            stdin = os.open(request["stdin"], os.O_RDONLY)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        err = (out if request["err"] == request["out"] else
               os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        random.seed()
        faulthandler.enable()  # a crash in the child leaves its traceback in the log
        sys.argv = ["outbox", *request["argv"]]
        from outbox.main import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
    except BaseException:  # what `python -m outbox` would print
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve_forever() -> None:
    """The zygote's loop: fork on request, reap children, write their exit statuses."""
    for module in PRELOAD:
        __import__(module)
    from outbox.cli.common import click_command
    from outbox.main import app

    click_command(app)  # the CLI's command tree, built once for every child
    # As a forking server would: collected once and frozen before the forks, so a full
    # collection in a child walks what the child made, not the imports it inherited (a
    # serve then freezes its own start-up too, runtime/heap.py).
    gc.collect()
    gc.freeze()
    statuses: dict[int, str] = {}
    requests = sys.stdin.buffer
    answers = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=answers, flush=True)
    while True:
        readable, _, _ = select.select([requests], [], [], 0.05)
        if readable:
            line = requests.readline()
            if not line:
                return
            request = json.loads(line)
            ready, told = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready)
                _child(request, told)
            os.close(told)
            os.read(ready, 1)  # empty if the child died first: the status file tells
            os.close(ready)
            statuses[pid] = request["status"]
            print(json.dumps({"pid": pid}), file=answers, flush=True)
        while statuses:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            path = statuses.pop(pid, None)
            if path is not None:
                # A test directory may be gone by the time its process ends.
                with contextlib.suppress(OSError):
                    Path(path + ".tmp").write_text(str(os.waitstatus_to_exitcode(status)))
                    os.replace(path + ".tmp", path)


class Forked:
    """The parts of `subprocess.Popen` the tests use, for a process the zygote forked."""

    def __init__(self, pid: int, status: Path) -> None:
        self.pid = pid
        self._status = status
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"outbox (pid {self.pid})", timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    _lock = threading.Lock()
    _process: subprocess.Popen[str] | None = None
    _serial = 0

    @classmethod
    def _started(cls) -> subprocess.Popen[str]:
        if cls._process is None or cls._process.poll() is not None:
            # What the imports might read and keep (rich's consoles fix their width when
            # COLUMNS is set at creation) comes from each start's own environment instead.
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("OUTBOX_", "FORCE_", "TTY_"))
                   and k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
            cls._process = subprocess.Popen(
                [sys.executable, "-m", "tests.zygote"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parents[1])
            ready = _answer(cls._process)
            assert "ready" in ready, ready
        return cls._process

    @classmethod
    def spawn(cls, argv: list[str], env: dict[str, str], cwd: str | Path, out: Path,
              err: Path | None = None, stdin: Path | None = None) -> Forked:
        with cls._lock:
            process = cls._started()
            cls._serial += 1
            status = out.with_name(f"{out.name}.{os.getpid()}-{cls._serial}.exit")
            status.unlink(missing_ok=True)
            assert process.stdin is not None
            process.stdin.write(json.dumps({
                "argv": argv, "env": env, "cwd": str(cwd), "out": str(out),
                "err": str(err or out), "status": str(status),
                "stdin": str(stdin) if stdin else ""}) + "\n")
            process.stdin.flush()
            answer = _answer(process)
        return Forked(answer["pid"], status)


def _answer(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("the test zygote ended; see its stderr above")
    answer: dict[str, Any] = json.loads(line)
    return answer


def run(argv: list[str], env: dict[str, str], cwd: str | Path, scratch: Path | None = None,
        input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Like `subprocess.run([python, -m, outbox, *argv], capture_output=True, text=True)`,
    by fork; the output is captured in files in `scratch` (default: a temporary
    directory of this test process, never the command's working directory)."""
    scratch = scratch or _scratch()
    stamp = f"cli-{os.getpid()}-{time.monotonic_ns()}"
    out, err = scratch / f"{stamp}.out", scratch / f"{stamp}.err"
    feed = None
    if input is not None:
        feed = scratch / f"{stamp}.in"
        feed.write_text(input)
    child = Zygote.spawn(argv, env, cwd, out, err, stdin=feed)
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
        raise
    texts = [path.read_text(errors="replace") if path.exists() else "" for path in (out, err)]
    for path in (out, err, feed):
        if path is not None:
            path.unlink(missing_ok=True)
    return subprocess.CompletedProcess(["outbox", *argv], code, texts[0], texts[1])


@functools.cache
def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="outbox-zygote-"))


if __name__ == "__main__":
    serve_forever()


