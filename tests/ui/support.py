"""The web UI under test: a real `outbox serve` with a real SMTP sink, driven by a real
Chromium (Debian's, through Playwright; nothing is downloaded)."""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.dbsql import sql
from tests.processes import API_KEY, READ_ONLY_KEY, OutboxProcess
from tests.zygote import run as fork_run

CHROMIUM = "/usr/bin/chromium"
ADMIN_KEY = "ob_test_ui_admin_key_55"  # send, read, contacts: sets up address books
PASSWORD = "correct horse battery"
USERS = {"admin": "admin", "sally": "sender", "vic": "viewer"}
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("OUTBOX_TEST_ARTIFACTS", ROOT / "tmp" / "artifacts" / "ui"))
AXE = Path(__file__).parent / "assets" / "axe-4.14.1.min.js"


@dataclass
class Ui:
    process: OutboxProcess
    database_url: str

    @property
    def url(self) -> str:
        return f"{self.process.base_url}/ui"

    def api(self) -> httpx.Client:
        return self.process.client(ADMIN_KEY)

    def count(self, where: str = "1=1") -> int:
        return int(sql(self.database_url, f"SELECT count(*) FROM messages WHERE {where}")[0][0])

    def sign_in(self, page: Page, name: str = "admin", password: str = PASSWORD) -> None:
        page.goto(f"{self.url}/login")
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def add_users(config: dict[str, Any], users: dict[str, str] = USERS) -> None:
    """UI users, all with PASSWORD, straight into the store with one hash of it made per
    test process: argon2 costs 0.3 s of CPU per hash here, by design, and three users per
    UI test added up. Creating users through the service and the CLI, hashing included,
    is tested in tests/integration/test_cli_users.py and tests/ui/test_auth.py."""
    from outbox.config import Settings
    from outbox.service import Outbox
    from outbox.store.base import UiUser

    async def create() -> None:
        settings = Settings(**{k: v for k, v in config.items() if k != "logging"})
        outbox = await Outbox.open(settings)
        try:
            now = outbox.clock()
            for name, role in users.items():
                await outbox.store.ui_users.create_ui_user(
                    UiUser(name, role, _password_hash(), now, now))
        finally:
            await outbox.close()

    in_thread(create)


@functools.cache
def _password_hash() -> str:
    from outbox.service.users import _HASHER  # the product's own parameters

    return _HASHER.hash(PASSWORD)


def in_thread(coroutine: Any) -> Any:
    """Run `coroutine()` to completion in a thread of its own (Playwright's sync API
    keeps an event loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine()).result()


def cli_add_user(process: OutboxProcess, name: str, role: str, password: str,
                 command: tuple[str, ...] = ("users", "create", "--name")) -> str:
    done = fork_run([*command, name, "--role", role, "--password-stdin", "--config",
                     str(process.config_path)], dict(os.environ), os.getcwd(),
                    input=password + "\n")
    assert done.returncode == 0, done.stderr
    return done.stdout


def screenshot(page: Page, name: str) -> None:
    """The page at 1280 px and 390 px wide, as test artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 800}
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(size)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def api_keys() -> dict[str, Any]:
    return {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
                         {"name": "viewer", "key": READ_ONLY_KEY, "scopes": ["read"]},
                         {"name": "ui-admin", "key": ADMIN_KEY,
                          "scopes": ["send", "read", "contacts"]}]}


def post_form(page: Page, action: str, fields: dict[str, str]) -> None:
    """Post a form from the current page with its session's own CSRF token, as a user
    who edits the page could: the server, not the missing button, must refuse it."""
    page.evaluate("""([action, fields]) => {
        const token = document.querySelector('input[name=csrf_token]').value;
        const f = document.createElement('form'); f.method = 'post'; f.action = action;
        for (const [k, v] of [['csrf_token', token], ...Object.entries(fields)]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
          f.appendChild(i); }
        document.body.appendChild(f); f.submit(); }""", [action, fields])
