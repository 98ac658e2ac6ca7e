"""The storage contract of integrations (store.base imports these): event webhook
endpoints and their deliveries (`store.webhooks`), and API keys' token buckets
(`store.rate_limits`), relays' governor state (`store.governor`), and the web UI's
users (`store.ui_users`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from outbox.core.governor import GovernorState
from outbox.core.ratelimit import Grant, Limit
from outbox.store.webhook_values import (
    DeliveryResult,
    DueDelivery,
    EndpointStreak,
    WebhookDelivery,
    WebhookEndpoint,
)


class WebhookStore(Protocol):
    """Event webhook endpoints and their deliveries. A delivery per enabled endpoint
    subscribed to an event's type is inserted in the transaction that records the
    event (whatever verb records it), so an event is never lost across a crash."""

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Store a new endpoint; it gets the events recorded from now on."""

    async def list_endpoints(self) -> tuple[WebhookEndpoint, ...]:
        """Every endpoint, disabled ones too, oldest first."""

    async def get_endpoint(self, id: str) -> WebhookEndpoint:
        """`errors.NotFound` for an unknown id."""

    async def delete_endpoint(self, id: str) -> None:
        """Delete the endpoint and its deliveries; `errors.NotFound` for an unknown id."""

    async def set_endpoint_enabled(self, id: str, enabled: bool, reason: str,
                                   now: datetime) -> bool:
        """Disable (with `reason`) or enable the endpoint; enabling clears its failure
        streak. False when it already was so; `errors.NotFound` for an unknown id."""

    async def claim_deliveries(self, now: datetime, lease_until: datetime, token: str,
                               requests: int, max_batch: int) -> list[tuple[DueDelivery, ...]]:
        """Claim the pending deliveries due at `now` of enabled endpoints for up to
        `requests` requests, oldest due first: a request holds one endpoint's
        deliveries, up to its batch size (at most `max_batch`), with the facts of their
        events. Each is hidden until `lease_until`, so a process that dies mid-request
        does not lose it, and never handed out twice meanwhile."""

    async def record_deliveries(self, results: Sequence[DeliveryResult]) -> list[EndpointStreak]:
        """Write each result whose token still holds its delivery (delivered, due again
        at `next_at`, or failed for good) and the endpoints' failure streaks, in one
        transaction; returns the streak of every endpoint touched."""

    async def delivery_log(self, endpoint_id: str, limit: int,
                           before: int | None = None) -> tuple[WebhookDelivery, ...]:
        """The endpoint's deliveries, newest first, those with an id under `before`;
        `errors.NotFound` for an unknown endpoint."""

    async def redeliver(self, event_id: int, endpoint_id: str | None,
                        now: datetime) -> int:
        """Deliver the event again, due now with a fresh `max_age`: to this endpoint
        (whether or not it had it; `errors.InputError` unless it subscribes to the
        event's type), or to every endpoint that had it. Returns how many deliveries
        were made due; `errors.NotFound` when none could be."""


class RateLimitStore(Protocol):
    """Token buckets (core.ratelimit) by key, shared by every node."""

    async def take_tokens(self, key: str, limit: Limit, need: int, want: int,
                          give_back: int, now: datetime) -> Grant:
        """Return `give_back` unspent tokens, then take between `need` and `want`
        tokens from the bucket, or none when fewer than `need` are there; one
        transaction, written only when tokens moved."""


class GovernorStore(Protocol):
    """Each relay's governor state (core.governor), shared by every node."""

    async def load_governor_state(self, relay: str) -> GovernorState:
        """The relay's state; an open relay's default when it never had one."""

    async def governor_states(self) -> tuple[GovernorState, ...]:
        """Every relay that ever backed off or was throttled, by name."""

    async def change_governor_state(self, relay: str,
                                    step: Callable[[GovernorState], GovernorState],
                                    now: datetime) -> GovernorState:
        """Read the relay's state, apply `step` and store the result, in one transaction
        that excludes every other change of the same relay; returns the new state."""

    async def bring_relay_forward(self, relay: str, now: datetime, until: datetime) -> int:
        """Deferred messages with a recipient still to deliver through `relay`, due after
        `now` and by `until` (what the relay's back-off held back), due now, a chunk per
        transaction; how many."""


@dataclass(frozen=True, slots=True)
class UiUser:
    """A web UI login: an argon2 hash, never the password."""

    name: str
    role: str  # admin | sender | viewer
    password_hash: str
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class UiUserStore(Protocol):
    """The web UI's users, and what its dashboard reads of recent activity."""

    async def create_ui_user(self, user: UiUser) -> None:
        """`errors.Conflict` when the name is taken."""

    async def find_ui_user(self, name: str) -> UiUser | None:
        """The user of this name, disabled ones too."""

    async def list_ui_users(self) -> tuple[UiUser, ...]:
        """Every user, by name."""

    async def update_ui_user(self, name: str, now: datetime, *, password_hash: str | None = None,
                             disabled: bool | None = None) -> bool:
        """Change a user's hash or disabled state; False for an unknown name. A new hash
        or disabling ends the user's sessions in the same transaction."""

    async def start_ui_session(self, id_hash: str, user: str, now: datetime,
                               expires_at: datetime) -> None:
        """Record a signed-in session (by the hash of its id), forgetting expired ones."""

    async def find_ui_session(self, id_hash: str, now: datetime) -> UiUser | None:
        """The user of this session while it lasts (disabled users too); None when it
        ended, expired or its user is gone. One read: every UI request makes it."""

    async def end_ui_sessions(self, *, id_hash: str | None = None,
                              user: str | None = None) -> int:
        """End one session, or every session of `user`; how many ended."""

    async def activity(self, since: datetime,
                       types: Sequence[str]) -> dict[tuple[datetime, str], int]:
        """(minute, event type) -> how many events of these types happened since `since`."""
