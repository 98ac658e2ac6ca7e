"""The relay-authentication verbs on both backends: relay state and stored
credentials (versions, rotation, conditional state changes) and API keys."""

from __future__ import annotations

import asyncio

import pytest

from outbox.core.model import Event, EventType, MessageStatus
from outbox.errors import Conflict
from outbox.store.base import NEEDS_ATTENTION, RELAY_OK, RelayAuth, Store, StoredApiKey
from tests.contract.conftest import OpenStore
from tests.contract.support import at, new_message


async def test_a_relay_never_touched_has_the_default_state(store: Store) -> None:
    auth = await store.relay_auth.load_relay_credentials("default")
    assert auth == RelayAuth("default")
    assert (auth.state, auth.version, auth.credentials) == (RELAY_OK, 0, None)
    assert await store.relay_auth.relay_states() == ()


async def test_saving_credentials_bumps_the_version_and_keeps_the_state(store: Store) -> None:
    await store.relay_auth.set_relay_state("default", NEEDS_ATTENTION, "535 5.7.8 bad",
                                           "smtp.5.7.8", at(0))

    assert await store.relay_auth.save_relay_credentials("default", "sealed-1", at(1)) == 1
    assert await store.relay_auth.save_relay_credentials("default", "sealed-2", at(2)) == 2

    auth = await store.relay_auth.load_relay_credentials("default")
    assert (auth.version, auth.credentials, auth.updated_at) == (2, "sealed-2", at(2))
    assert (auth.state, auth.reason, auth.guidance) == (NEEDS_ATTENTION, "535 5.7.8 bad",
                                                        "smtp.5.7.8")
    assert auth.needs_attention


async def test_a_state_change_can_be_conditional_on_the_credentials_version(
        store: Store) -> None:
    version = await store.relay_auth.save_relay_credentials("default", "sealed", at(0))

    failing = ("default", NEEDS_ATTENTION, "535", "smtp.535")
    stale = await store.relay_auth.set_relay_state(*failing, at(1), version=version - 1)
    current = await store.relay_auth.set_relay_state(*failing, at(2), version=version)
    again = await store.relay_auth.set_relay_state(*failing, at(3))

    assert (stale, current, again) == (False, True, False)  # again: nothing changed
    assert (await store.relay_auth.load_relay_credentials("default")).updated_at == at(2)


async def test_state_of_config_credentials_is_version_zero(store: Store) -> None:
    assert await store.relay_auth.set_relay_state("other", NEEDS_ATTENTION, "535", "smtp.535",
                                                  at(0), version=0)
    assert await store.relay_auth.set_relay_state("other", RELAY_OK, "", "", at(1), version=0)
    (auth,) = await store.relay_auth.relay_states()
    assert (auth.relay, auth.state, auth.version, auth.credentials) == ("other", RELAY_OK, 0,
                                                                        None)


async def test_rotation_replaces_credentials_only_while_their_version_is_current(
        store: Store) -> None:
    assert await store.relay_auth.rotate_relay_credentials("default", "rotated-config", 0, at(0))
    auth = await store.relay_auth.load_relay_credentials("default")
    assert auth.credentials == "rotated-config"

    version = await store.relay_auth.save_relay_credentials("default", "from-operator", at(1))
    assert not await store.relay_auth.rotate_relay_credentials("default", "late", version - 1,
                                                               at(2))
    assert await store.relay_auth.rotate_relay_credentials("default", "rotated", version, at(3))

    auth = await store.relay_auth.load_relay_credentials("default")
    assert (auth.version, auth.credentials) == (version, "rotated")


async def test_relay_states_lists_every_relay_by_name(store: Store) -> None:
    await store.relay_auth.save_relay_credentials("zeta", "z", at(0))
    await store.relay_auth.set_relay_state("alpha", NEEDS_ATTENTION, "token refused",
                                           "oauth_token_rejected", at(1))
    states = await store.relay_auth.relay_states()
    assert [(s.relay, s.state, s.version) for s in states] == [
        ("alpha", NEEDS_ATTENTION, 0), ("zeta", RELAY_OK, 1)]


async def test_two_nodes_saving_at_once_get_distinct_versions(open_stores: OpenStore) -> None:
    one, two = await open_stores(), await open_stores()
    versions = await asyncio.gather(*(s.relay_auth.save_relay_credentials("default", f"s{n}", at(n))
                                      for n, s in enumerate((one, two, one, two))))
    assert sorted(versions) == [1, 2, 3, 4]


async def test_hold_and_release_of_a_relay_that_needs_attention(store: Store) -> None:
    """The verbs the credentials use cases pair with the state: waiting mail is held
    without an attempt, then released."""
    queued = new_message(relay="default")
    elsewhere = new_message(relay="other")
    for message in (queued, elsewhere):
        await store.messages.enqueue(message)
    event = Event(at(1), EventType.ALERT, reply_code=535, enhanced_code="5.7.8",
                  reply="bad credentials", guidance="smtp.5.7.8", detail="relay needs attention")

    reason = "relay default needs attention"
    assert await store.messages.hold_relay("default", at(1), reason, event) == 1
    held = (await store.messages.get(queued.id))
    assert (held.message.status, held.message.attempts) == (MessageStatus.HELD, 0)
    assert held.events[-1] == event
    assert (await store.messages.get(elsewhere.id)).message.status is MessageStatus.QUEUED

    assert await store.messages.release_relay("default", at(2)) == 1
    assert (await store.messages.get(queued.id)).message.status is MessageStatus.QUEUED


async def test_needs_attention_and_new_credentials_never_interleave(
        open_stores: OpenStore) -> None:
    """A login failure (hold) racing new credentials (release) from two nodes: whatever
    the order, mail is never left held under a relay whose current credentials are not
    the ones that failed (issue 10, part 6)."""
    one, two = await open_stores(), await open_stores()
    event = Event(at(1), EventType.ALERT, guidance="smtp.5.7.8", detail="relay needs attention")
    for round in range(20):
        waiting = new_message(relay="default")
        await one.messages.enqueue(waiting)
        failed = (await one.relay_auth.load_relay_credentials("default")).version
        held, (version, _) = await asyncio.gather(
            one.relay_auth.hold_for_relay("default", failed, "535 5.7.8 bad", "smtp.5.7.8",
                                          at(round), "relay default needs attention", event),
            two.relay_auth.store_credentials("default", f"sealed-{round}", at(round)))
        auth = await one.relay_auth.load_relay_credentials("default")
        status = (await one.messages.get(waiting.id)).message.status
        assert auth.version == version == failed + 1
        if auth.needs_attention:  # impossible: the new credentials came last or first
            raise AssertionError(f"round {round}: needs_attention under new credentials")
        assert status is MessageStatus.QUEUED, (round, held)


async def test_hold_for_relay_with_stale_credentials_changes_nothing(store: Store) -> None:
    await store.messages.enqueue(new_message(relay="default"))
    version, released = await store.relay_auth.store_credentials("default", "sealed", at(0))
    event = Event(at(1), EventType.ALERT, guidance="smtp.5.7.8")

    assert await store.relay_auth.hold_for_relay("default", version - 1, "535", "smtp.5.7.8",
                                                 at(1), "held", event) is None
    assert (version, released) == (1, 0)
    assert (await store.relay_auth.load_relay_credentials("default")).state == RELAY_OK
    done = await store.relay_auth.hold_for_relay("default", version, "535", "smtp.5.7.8", at(2),
                                                 "held", event)
    assert done == (True, 1)
    assert await store.relay_auth.mark_ok("default", version - 1, at(3)) is None
    assert await store.relay_auth.mark_ok("default", version, at(3)) == 1
    assert (await store.relay_auth.load_relay_credentials("default")).state == RELAY_OK


async def test_storing_none_forgets_the_stored_credentials_and_releases(store: Store) -> None:
    version, _ = await store.relay_auth.store_credentials("default", "sealed", at(0))
    held, _ = await store.messages.enqueue(new_message(relay="default"))
    event = Event(at(1), EventType.ALERT, guidance="smtp.5.7.8")
    assert await store.relay_auth.hold_for_relay("default", version, "535", "smtp.5.7.8",
                                                 at(1), "held", event) == (True, 1)

    cleared, released = await store.relay_auth.store_credentials("default", None, at(2))

    auth = await store.relay_auth.load_relay_credentials("default")
    assert (auth.credentials, auth.version, auth.state) == (None, version + 1, RELAY_OK)
    assert (cleared, released) == (version + 1, 1)
    assert (await store.messages.get(held.id)).message.status is MessageStatus.QUEUED


# --- API keys ---------------------------------------------------------------------------

def key(name: str = "ci", digest: str = "d" * 64, seconds: float = 0,
        scopes: tuple[str, ...] = ("send", "read")) -> StoredApiKey:
    return StoredApiKey(name, digest, scopes, at(seconds))


async def test_a_created_key_is_found_by_its_digest_until_revoked(store: Store) -> None:
    await store.keys.create_api_key(key())

    assert await store.keys.find_api_key("d" * 64) == key()
    assert await store.keys.find_api_key("e" * 64) is None
    assert await store.keys.revoke_api_key("ci", at(5)) is True
    assert await store.keys.revoke_api_key("ci", at(6)) is False
    assert await store.keys.find_api_key("d" * 64) is None
    (revoked,) = await store.keys.list_api_keys()
    assert (revoked.name, revoked.revoked_at) == ("ci", at(5))


async def test_a_name_is_used_by_one_active_key_at_a_time(store: Store) -> None:
    await store.keys.create_api_key(key(digest="a" * 64))
    with pytest.raises(Conflict, match="already exists"):
        await store.keys.create_api_key(key(digest="b" * 64))

    await store.keys.revoke_api_key("ci", at(1))
    await store.keys.create_api_key(key(digest="b" * 64, seconds=2, scopes=("admin",)))

    listed = await store.keys.list_api_keys()
    assert [(k.name, k.digest[0], k.scopes, k.revoked_at) for k in listed] == [
        ("ci", "a", ("send", "read"), at(1)), ("ci", "b", ("admin",), None)]
