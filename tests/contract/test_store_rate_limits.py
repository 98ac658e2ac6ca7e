"""API keys' token buckets in the store: shared by every store (node) on the database,
never granting more than the limit, written only when tokens move."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from outbox.core.ratelimit import Limit
from outbox.store.base import Store
from tests.contract.conftest import OpenStore
from tests.contract.support import at

TEN = Limit(10)  # a minute: 10 at once, then one every 6 s


async def test_a_new_bucket_is_full_and_grants_up_to_its_burst(store: Store) -> None:
    first = await store.rate_limits.take_tokens("app:messages", TEN, 1, 4, 0, at(0))
    assert (first.granted, first.left) == (4, 6)
    rest = await store.rate_limits.take_tokens("app:messages", TEN, 6, 6, 0, at(0))
    assert (rest.granted, rest.left) == (6, 0)

    refused = await store.rate_limits.take_tokens("app:messages", TEN, 1, 1, 0, at(3))
    assert refused.granted == 0
    assert refused.wait == timedelta(seconds=3)  # half a token there after 3 s
    assert (await store.rate_limits.take_tokens("app:messages", TEN, 1, 1, 0, at(6))).granted == 1


async def test_given_back_tokens_can_be_taken_again(store: Store) -> None:
    await store.rate_limits.take_tokens("app:requests", TEN, 10, 10, 0, at(0))
    back = await store.rate_limits.take_tokens("app:requests", TEN, 2, 2, 3, at(0))
    assert (back.granted, back.left) == (2, 1)


async def test_buckets_are_per_key(store: Store) -> None:
    await store.rate_limits.take_tokens("a:messages", TEN, 10, 10, 0, at(0))
    assert (await store.rate_limits.take_tokens("b:messages", TEN, 1, 1, 0, at(0))).granted == 1
    assert (await store.rate_limits.take_tokens("a:requests", TEN, 1, 1, 0, at(0))).granted == 1


async def test_nodes_sharing_the_database_never_grant_more_than_the_burst(
        store: Store, open_stores: OpenStore) -> None:
    nodes = [store, await open_stores(), await open_stores()]

    grants = await asyncio.gather(*(
        node.rate_limits.take_tokens("shared:messages", TEN, 1, 1, 0, at(0))
        for _ in range(8) for node in nodes))

    assert sum(g.granted for g in grants) == 10
    assert sum(1 for g in grants if g.granted == 0) == 14
