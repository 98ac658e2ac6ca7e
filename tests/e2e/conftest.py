"""End-to-end fixtures: real `outbox` processes on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import database
from tests.processes import OutboxProcess, base_config, free_port, stop_all, write_config

Starter = Callable[..., OutboxProcess]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_server(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutboxProcess]:
    """One `outbox serve` per module and backend, for tests that only read or
    that leave the queue as they found it; its relay port is closed."""
    directory = tmp_path_factory.mktemp("shared")
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    with database(request.param, directory) as url:
        config = base_config(directory, url, [relay], limits={"max_message_size": "200KB"})
        process = OutboxProcess(write_config(directory / "outbox.toml", config), config)
        process.start()
        try:
            yield process
        finally:
            process.stop(timeout=10)


@pytest.fixture
def closed_relay() -> dict[str, Any]:
    """A relay on a loopback port where nothing listens."""
    return {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}


@pytest.fixture
def start_outbox(tmp_path: Path, database_url: str) -> Iterator[Starter]:
    """start_outbox(relays, command="serve", forked=None, **sections) → a running
    process."""
    started: list[OutboxProcess] = []

    def start(relays: list[dict[str, Any]], command: str = "serve", wait: bool = True,
              config: dict[str, Any] | None = None, forked: bool | None = None,
              **sections: dict[str, Any]) -> OutboxProcess:
        if config is None:
            config = base_config(tmp_path, database_url, relays, **sections)
        path = write_config(tmp_path / f"outbox-{len(started)}.toml", config)
        process = OutboxProcess(path, config, command=command)
        if forked is not None:  # False: a real exec, where start-up time is under test
            process.forked = forked
        started.append(process)
        return process.start(wait=wait)

    yield start
    stop_all(started)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., OutboxProcess]]:
    """launch(config, command="serve", wait=True, **options) → a running process on a
    config the test built itself (no backend parameter); stopped afterwards.
    `options` go to OutboxProcess (env, wrapper)."""
    started: list[OutboxProcess] = []

    def start(config: dict[str, Any], command: str = "serve", wait: bool = True,
              **options: Any) -> OutboxProcess:
        path = write_config(tmp_path / f"{command}-{len(started)}.toml", config)
        process = OutboxProcess(path, config, command=command, **options)
        started.append(process)
        return process.start(wait=wait)

    yield start
    stop_all(started)
