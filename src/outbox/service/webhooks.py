"""The webhooks facet: event webhook endpoints for operators (`outbox webhooks ...`,
/v1/webhooks), and the dispatcher that delivers (service/webhook_dispatch.py).

An endpoint gets the events it subscribes to (core.webhooks.WEBHOOK_EVENTS), each
POST signed with its own secret as SPEC §2 says. The secret is given by the caller
or made here, shown once (like an API key) and stored sealed with the
installation's key (outbox.secrets), since signing needs it back. A URL is
refused unless it is http(s) and every address its host resolves to is public or
in `[webhooks] allowed_networks` (SSRF); the dispatcher checks again at every
connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core import webhooks as rules
from outbox.core.targets import (
    Network,
    TargetRefused,
    TargetUnresolved,
    check_url,
    parse_networks,
)
from outbox.errors import InputError
from outbox.secrets import SecretBox, open_box
from outbox.store.base import Store
from outbox.store.webhook_values import WebhookDelivery, WebhookEndpoint

log = structlog.get_logger("outbox.webhooks")

SECRET_PREFIX = "whsec_"
MIN_SECRET = 16  # characters of a secret the caller gives
LOG_LIMIT = 500


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once, stored sealed


def delivery_policy(settings: Settings) -> rules.DeliveryPolicy:
    w = settings.webhooks
    return rules.DeliveryPolicy(w.first_delay, w.max_delay, w.max_age,
                                w.disable_after_failures, w.disable_after)


class Webhooks:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow,
                 box: Callable[[], SecretBox] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.allowed: tuple[Network, ...] = parse_networks(settings.webhooks.allowed_networks)
        self._clock = clock
        self._box_value: SecretBox | None = None
        self._box_factory = box

    def box(self) -> SecretBox:
        """The installation's key, opened on first use (PostgreSQL needs one given)."""
        if self._box_value is None:
            self._box_value = self._box_factory() if self._box_factory else open_box(
                self.settings.database.url, self.settings.secrets.key_file)
        return self._box_value

    async def add(self, url: str, events: Iterable[str], *, secret: str | None = None,
                  batch_size: int = 1, description: str = "") -> CreatedEndpoint:
        """A new endpoint, checked (URL, addresses, events, batch size)."""
        url = url.strip()
        await self.check_target(url)
        names = _events(events)
        if not 1 <= batch_size <= self.settings.webhooks.max_batch:
            raise InputError(f"batch_size must be 1 to {self.settings.webhooks.max_batch} "
                             "([webhooks] max_batch)", field="batch_size")
        secret = _secret(secret)
        endpoint = WebhookEndpoint(
            id=f"wh_{secrets.token_hex(8)}", url=url, events=names,
            secret=self.box().seal(secret), batch_size=batch_size, created_at=self._clock(),
            description=description.strip())
        await self.store.webhooks.add_endpoint(endpoint)
        log.info("webhook endpoint added", endpoint=endpoint.id, url=url, events=list(names))
        return CreatedEndpoint(endpoint, secret)

    async def check_target(self, url: str) -> None:
        """InputError (field `url`) unless Outbox may post to this URL: a host that
        resolves to a refused address is refused; one that does not resolve (yet) is
        let through with a warning, as every delivery checks its addresses again."""
        from outbox.delivery.webhook_http import resolve_checked  # httpx: only here

        try:
            host, port = check_url(url)
            await resolve_checked(host, port, self.allowed,
                                  self.settings.webhooks.timeout.total_seconds())
        except TargetUnresolved as exc:
            log.warning("webhook host does not resolve yet; checked again at each delivery",
                        url=url, reason=str(exc))
        except TargetRefused as exc:
            raise InputError(str(exc), field="url") from None

    async def list(self) -> tuple[WebhookEndpoint, ...]:
        return await self.store.webhooks.list_endpoints()

    async def get(self, id: str) -> WebhookEndpoint:
        return await self.store.webhooks.get_endpoint(id)

    async def remove(self, id: str) -> None:
        await self.store.webhooks.delete_endpoint(id)
        log.info("webhook endpoint removed", endpoint=id)

    async def enable(self, id: str) -> bool:
        """Enable a disabled endpoint: its pending events resume."""
        changed = await self.store.webhooks.set_endpoint_enabled(id, True, "", self._clock())
        if changed:
            log.info("webhook endpoint enabled", endpoint=id)
        return changed

    async def disable(self, id: str, reason: str = "disabled by an operator") -> bool:
        return await self.store.webhooks.set_endpoint_enabled(id, False, reason, self._clock())

    async def log(self, id: str, limit: int = 50,
                  before: int | None = None) -> tuple[WebhookDelivery, ...]:
        """The endpoint's deliveries, newest first."""
        if not 1 <= limit <= LOG_LIMIT:
            raise InputError(f"limit must be 1 to {LOG_LIMIT}", field="limit")
        return await self.store.webhooks.delivery_log(id, limit, before)

    async def redeliver(self, event_id: str, endpoint_id: str | None = None) -> int:
        """Send the event again (same event id): to this endpoint, if it subscribes to
        the event's type (InputError otherwise), or to every endpoint that had it.
        Returns how many deliveries were made due."""
        number = rules.parse_event_id(event_id)
        if number is None:
            raise InputError(f"'{event_id}' is not an event id like evt_42", field="event_id")
        count = await self.store.webhooks.redeliver(number, endpoint_id, self._clock())
        log.info("webhook event redelivered", event_id=rules.public_event_id(number),
                 endpoint=endpoint_id, deliveries=count)
        return count


def _events(events: Iterable[str]) -> tuple[str, ...]:
    """The event names; an unknown one is an InputError whose field is the list item
    that names it (`events[1]`), not the whole list."""
    items = tuple(events)
    for index, item in enumerate(items):
        if item.replace(",", "").strip():  # a blank item names nothing: no error of its own
            try:
                rules.parse_events([item])
            except rules.UnknownEvent as exc:
                raise InputError(str(exc), field=f"events[{index}]") from None
    try:
        return rules.parse_events(items)
    except rules.UnknownEvent as exc:  # no event named at all
        raise InputError(str(exc), field="events") from None


def _secret(given: str | None) -> str:
    if given is None or not given.strip():
        return SECRET_PREFIX + secrets.token_urlsafe(32)
    if len(given.strip()) < MIN_SECRET:
        raise InputError(f"a webhook secret has at least {MIN_SECRET} characters; leave it "
                         "out to have one made", field="secret")
    return given.strip()


