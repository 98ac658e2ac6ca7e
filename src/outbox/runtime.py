"""Long-running processes: `outbox serve` (API + UI + workers) and `outbox worker`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import structlog
import uvicorn

from outbox.alerts import AlertEngine
from outbox.api.app import create_app
from outbox.config import Settings
from outbox.observability import DeliveryMetrics
from outbox.relaygate import RelayGates
from outbox.service import Outbox
from outbox.store.base import Store
from outbox.worker import Worker

log = structlog.get_logger("outbox.runtime")


def build_pools(settings: Settings, store: Store) -> RelayGates:
    """Each relay's session pool behind its gate (current credentials, relay state)."""
    return RelayGates(settings, store)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_stop_signals(callback: object) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)  # type: ignore[arg-type]


async def run_worker_process(settings: Settings) -> None:
    outbox = await Outbox.open(settings)
    pools = build_pools(settings, outbox.store)
    worker = Worker(outbox.store, settings, pools, on_verdict=pools.after_verdict)
    _on_stop_signals(worker.stop)
    log.info("worker started", owner=worker.owner, relays=list(pools))
    try:
        await worker.run()
    finally:
        await _close(outbox, pools)
        log.info("worker stopped", owner=worker.owner)


async def run_serve_process(settings: Settings) -> None:
    outbox = await Outbox.open(settings)
    pools = build_pools(settings, outbox.store)
    delivery_metrics = DeliveryMetrics()
    worker = Worker(outbox.store, settings, pools, metrics=delivery_metrics,
                    on_verdict=pools.after_verdict)
    alerts = AlertEngine(outbox.store, settings.alerts)
    config = uvicorn.Config(create_app(outbox, delivery_metrics), host=settings.server.host,
                            port=settings.server.port, log_config=None, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5)
    server = _Server(config)

    def stop() -> None:
        server.should_exit = True
        worker.stop()

    _on_stop_signals(stop)
    log.info("outbox serving", bind=settings.server.bind, database=_safe_url(settings),
             relays=list(pools), owner=worker.owner)
    worker_task = asyncio.create_task(worker.run())
    alerts_task = asyncio.create_task(alerts.run())
    contacts_task = asyncio.create_task(outbox.contacts.sync_periodically())  # [ldap]
    try:
        await server.serve()
    finally:
        worker.stop()
        alerts_task.cancel()
        contacts_task.cancel()
        await asyncio.gather(alerts_task, contacts_task, return_exceptions=True)
        await alerts.aclose()
        await worker_task
        await _close(outbox, pools)
        log.info("outbox stopped")


async def _close(outbox: Outbox, pools: RelayGates) -> None:
    await pools.aclose()
    await outbox.close()


def _safe_url(settings: Settings) -> str:
    """The database URL without a password."""
    url = settings.database.url
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url
