"""Fixtures of the web UI tests: one Chromium per session, a fresh browser context per
test, and `outbox serve` on SQLite and on PostgreSQL with a real SMTP sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.pg import database
from tests.processes import OutboxProcess, base_config, stop_all, write_config
from tests.smtpd import ScriptedServer
from tests.ui.support import CHROMIUM, Ui, add_users, api_keys

StartUi = Callable[..., Ui]
expect.set_options(timeout=20_000)  # a shared 2-CPU machine: slow, never wrong


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API keeps an event loop running in this thread
    while it is started, which asyncio tests of later modules could not share."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-services.sh (make test does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


BOTH_BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each UI test runs on the backends its module names in `BACKENDS`, both unless it
    says otherwise. Pages that show what the store's listing, filter and bulk queries
    find run on both; a page whose behaviour cannot differ by backend (forms, sign-in,
    accessibility) runs on one, since the store contract tests already hold every query
    on both and each UI test costs a browser and a server (the suite's time, stop 23)."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", getattr(metafunc.module, "BACKENDS", BOTH_BACKENDS))


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def sink() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def start_ui(tmp_path: Path, database_url: str, sink: ScriptedServer) -> Iterator[StartUi]:
    """start_ui(relays=None, **sections) → a running `outbox serve` with the UI users
    admin, sally (sender) and vic (viewer); its relay is the sink unless given."""
    started: list[OutboxProcess] = []

    def start(relays: list[dict[str, Any]] | None = None, **sections: Any) -> Ui:
        relays = relays or [{"name": "default", "host": "127.0.0.1", "port": sink.port,
                             "security": "none"}]
        sections.setdefault("auth", api_keys())
        # Stored credentials (set credentials, OAuth2 connect) are sealed with this key,
        # which PostgreSQL's nodes must share.
        sections.setdefault("secrets", {"key_file": str(tmp_path / "secret.key")})
        config = base_config(tmp_path, database_url, relays, **sections)
        add_users(config)
        process = OutboxProcess(write_config(tmp_path / f"ui-{len(started)}.toml", config),
                                config)
        started.append(process)
        process.start()
        return Ui(process, database_url)

    yield start
    stop_all(started)


@pytest.fixture
def ui(start_ui: StartUi) -> Ui:
    return start_ui()
