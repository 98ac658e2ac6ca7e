"""A real `outbox serve` on SQLite per test module, with a key that holds every scope
(the fuzzer and the documentation checks reach every route)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import API_KEY, OutboxProcess, base_config, free_port, write_config

ALL_SCOPES = ["send", "read", "contacts", "admin"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutboxProcess]:
    directory = tmp_path_factory.mktemp("api")
    # Nothing listens on the relay's port: submitted mail waits, nothing leaves.
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none",
             "username": "outbox", "password": "relay-password"}
    config = base_config(directory, f"sqlite:///{directory / 'outbox.db'}", [relay],
                         auth={"api_keys": [{"name": "ops", "key": API_KEY,
                                             "scopes": ALL_SCOPES}]},
                         # Every network allowed: whether a generated webhook URL's host
                         # resolves to a private address is the network's business, not
                         # the request's (tests/e2e/test_webhooks.py checks the refusal).
                         webhooks={"allowed_networks": ["0.0.0.0/0", "::/0"]})
    process = OutboxProcess(write_config(directory / "outbox.toml", config), config)
    process.start()
    try:
        yield process
    finally:
        process.stop(timeout=10)
