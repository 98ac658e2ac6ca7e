"""Real `outbox` processes for end-to-end tests: config in a temp dir, free port,
wait for /healthz, logs to a file the test can read."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from outbox.runtime.children import process_running
from tests.zygote import Forked, Zygote
from tests.zygote import run as fork_run

API_KEY = "ob_test_key_0123456789"
READ_ONLY_KEY = "ob_test_readonly_987654"
OUTBOX = [sys.executable, "-m", "outbox"]
# The TLS context of every httpx client in the suite (`verify=TLS`). httpx makes a new one
# for each client otherwise, loading the CA bundle: 34 ms of CPU per client on the 2-core
# CI machine, where tests poll plain HTTP on loopback with a client per poll (py-spy of
# pytest over tests/e2e/test_delivery.py, test_api_input.py and test_observability.py:
# 57 % of its samples in `ssl.create_default_context`). Made as httpx makes it.
TLS = httpx.create_ssl_context()


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range. A port
    that bind(0) hands out comes from that range, so any outgoing connection (to
    PostgreSQL, to a relay) can take it as its source port before the server under test
    binds it: "bounces.bind ... is already in use" failed a CI run that way.

    Each pytest-xdist worker draws from a slice of its own, and never hands out a port
    it handed out recently: between this check and the server's bind, the port is free
    to anyone else who draws it. Two workers drew the same one in a CI run; the second
    server failed to bind, and its test took the first one's /healthz for its own."""
    low, high = _my_slice()
    for _ in range(200):
        port = _ports.randrange(low, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.append(port)
        return port
    with socket.socket() as s:  # a crowded range: what the kernel gives
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LOWEST_PORT = 20_000  # above the services of this machine (PostgreSQL, slapd, dovecot...)
_ports = random.SystemRandom()  # forked test workers must not draw the same sequence
_given: deque[int] = deque(maxlen=1000)


def _my_slice() -> tuple[int, int]:
    """[low, high) of the ports this process may hand out."""
    high = _ephemeral_range()[0]
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get(
        "PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and workers.isdigit()):
        return _LOWEST_PORT, high
    size = (high - _LOWEST_PORT) // int(workers)
    start = _LOWEST_PORT + int(worker[2:]) * size
    return start, start + size


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return max(int(low), _LOWEST_PORT + 1000), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    lines: list[str] = []
    for section, body in config.items():
        if isinstance(body, list) and all(isinstance(item, dict) for item in body):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
        elif isinstance(body, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{section} = {toml_value(body)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def base_config(tmp: Path, database_url: str, relays: list[dict[str, Any]],
                **sections: dict[str, Any]) -> dict[str, Any]:
    """A config for tests: fast retries, short network timeouts, test API keys.

    The lease and the sweep interval stay at their production defaults (issue 10:
    short leases hid mail stranded for five minutes after `kill -9`); a test that
    needs a shorter one sets it and says why. Delivery runs in serve (below)."""
    config: dict[str, Any] = {
        "server": {"bind": f"127.0.0.1:{free_port()}"},
        "database": {"url": database_url},
        "logging": {"level": "info", "format": "json", "file": str(tmp / "outbox.log")},
        # Delivery in serve's own process: a delivery process is a second interpreter's
        # start (1.5-2 s of CPU) behind every serve of the suite. The default ("auto": two
        # on two cores) has tests of its own (tests/e2e/test_delivery_processes.py).
        "delivery": {"poll_interval": "100ms", "connect_timeout": "3s",
                     "command_timeout": "3s", "data_timeout": "5s", "shutdown_grace": "3s",
                     "processes": 0},
        "retry": {"first_delay": "200ms", "max_delay": "1s", "max_attempts": 5,
                  "max_age": "1h"},
        "auth": {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
                              {"name": "viewer", "key": READ_ONLY_KEY, "scopes": ["read"]}]},
        "relays": relays,
        # Attachment files stay in the test's directory (the default for PostgreSQL
        # would be ./outbox-blobs in the working directory).
        "storage": {"blob_dir": str(tmp / "blobs")},
    }
    for name, values in sections.items():
        if isinstance(config.get(name), dict):
            config[name] = {**config[name], **values}
        else:
            config[name] = values
    return config


@dataclass
class OutboxProcess:
    config_path: Path
    config: dict[str, Any]
    command: str = "serve"
    env: dict[str, str] = field(default_factory=dict)
    wrapper: list[str] = field(default_factory=list)  # e.g. ["faketime", "-f", "+10m"]
    program: list[str] = field(default_factory=lambda: list(OUTBOX))  # e.g. [venv/bin/outbox]
    # By fork from a zygote that has imported Outbox (tests/zygote.py): the same code in a
    # process of its own, without 1.5-2 s of imports per start. Under pytest only (the
    # benches time real starts), unless OUTBOX_TEST_EXEC is set; False: a real exec, for
    # tests whose promise includes start-up time.
    forked: bool = field(default_factory=lambda: "pytest" in sys.modules
                         and not os.environ.get("OUTBOX_TEST_EXEC"))
    proc: subprocess.Popen[bytes] | Forked | None = None
    started_at: float = 0.0  # time.monotonic() when the process was spawned

    @property
    def base_url(self) -> str:
        return f"http://{self.config['server']['bind']}"

    @property
    def log_path(self) -> Path:
        return Path(self.config["logging"]["file"])

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The JSON log's entries of `event`, in order."""
        entries = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [entry for entry in entries if entry.get("event") == event]

    def start(self, wait: bool = True) -> OutboxProcess:
        env = {**os.environ, **self.env}
        self.started_at = time.monotonic()
        argv = [self.command, "--config", str(self.config_path)]
        if self._by_fork:
            self.proc = Zygote.spawn(argv, env, os.getcwd(), self._stderr_path)
        else:
            stderr = open(self._stderr_path, "ab")  # noqa: SIM115
            self.proc = subprocess.Popen([*self.wrapper, *self.program, *argv],
                                         env=env, stdout=stderr, stderr=stderr,
                                         start_new_session=True)
        if wait and self.command == "serve":
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until /healthz answers 200. The timeout only catches a serve that never gets
        there: on a loaded CI machine a serve with delivery processes (new interpreters)
        has taken more than 30 s, against 2-4 s on a quiet one."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"outbox {self.command} exited ({self.proc.returncode}): "
                                   f"{self.stderr_text()}")
            try:
                answer = httpx.get(f"{self.base_url}/healthz", timeout=1, verify=TLS)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:500]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
        log = ""
        with contextlib.suppress(KeyError, TypeError, OSError):  # a config without a log file
            log = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"outbox serve did not become healthy in {timeout:.0f}s; last "
                           f"/healthz: {last}; stderr: {self.stderr_text()}; log: {log}")

    @property
    def _by_fork(self) -> bool:
        return self.forked and not self.wrapper and self.program == OUTBOX

    @property
    def _stderr_path(self) -> Path:
        return self.config_path.with_suffix(f".{self.command}.stderr")

    def stderr_text(self) -> str:
        path = self._stderr_path
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._end_the_group()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM to the process group: with a wrapper (faketime runs Outbox as its
        child) Outbox itself gets it; nothing of the group outlives the stop."""
        if self.proc is None or self.proc.poll() is not None:
            self._end_the_group()
            return self.proc.returncode if self.proc else 0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.wrapper:  # the wrapper may end before the program it runs
            deadline = time.monotonic() + timeout
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        self._end_the_group()
        return code

    def _group_alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _end_the_group(self) -> None:
        if self.proc is not None and self._group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def client(self, key: str = API_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, verify=TLS,
                            headers={"Authorization": f"Bearer {key}"})

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        argv, env = [*args, "--config", str(self.config_path)], {**os.environ, **self.env}
        if self.forked and self.program == OUTBOX:  # no wrapper for a command
            result = fork_run(argv, env, os.getcwd(), self.config_path.parent)
            if check:
                result.check_returncode()
            return result
        return subprocess.run([*self.program, *argv], capture_output=True, text=True,
                              check=check, env=env, timeout=60)


def stop_all(processes: list[OutboxProcess]) -> None:
    """A fixture's teardown: stop each (SIGTERM, 10 s grace), killing what will not stop."""
    for process in processes:
        try:
            process.stop(timeout=10)
        except Exception:
            process.kill()


async def wait_until_async(check: Callable[[], Awaitable[Any]], what: str,
                           timeout: float = 20.0) -> None:
    """`wait_until` for a coroutine check, inside a test's event loop."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def flock_held(path: Path) -> bool:
    """Whether a process holds a `flock` on `path`, shared or exclusive (SQLite's write
    turn and its waiters, store/sqlite_turn.py)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (ended, not reaped yet) has ended."""
    return process_running(pid)


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def accepts(address: tuple[str, int], process: OutboxProcess, greeting: bytes = b"") -> bool:
    """Whether `process` (still running: else its stderr is the failure) accepts a
    connection on `address` yet, and with `greeting` its first reply begins with it."""
    assert process.proc is not None and process.proc.poll() is None, process.stderr_text()
    try:
        with socket.create_connection(address, timeout=5) as connection:
            return connection.recv(512).startswith(greeting) if greeting else True
    except OSError:
        return False
