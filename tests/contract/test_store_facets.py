"""The protocols cannot drift from the SQL classes: every verb of each narrow protocol
(store.base) is implemented by its SQL class with the same signature, and nothing else
is public. No database is needed."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outbox.store import base
from outbox.store.liveness import AdvisoryLocks, LockFiles
from outbox.store.sql.store import SqlStore

FACETS: dict[str, type] = typing.get_type_hints(base.Store)  # name -> protocol
ROOT_VERBS = ("ping", "migrate", "describe_database", "database_time", "check_writable",
              "writes_locked_out", "close")
LIVENESS = (LockFiles, AdvisoryLocks)  # not SQL: a lock file, an advisory lock


class NoDatabase:
    """A runner for building the store without a database; nothing may run."""

    parallel_writes = False

    async def read(self, body: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no transaction expected")

    write = read

    async def close(self) -> None:
        pass


def verbs(cls: type) -> dict[str, inspect.Signature]:
    """The public methods a class defines or inherits, by name, with their signatures."""
    return {name: inspect.signature(member, eval_str=True)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def protocol_verbs(protocol: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member, eval_str=True)
            for name, member in vars(protocol).items()
            if inspect.isfunction(member) and not name.startswith("_")}


FACET_VERBS = [(facet, verb) for facet, protocol in FACETS.items()
               for verb in protocol_verbs(protocol)]


def test_the_root_has_the_fifteen_facets() -> None:
    assert set(FACETS) == {"messages", "relay_auth", "keys", "alerts", "contacts", "blob_index",
                           "webhooks", "rate_limits", "governor", "suppressions", "archive",
                           "integrity", "retention", "ui_users", "liveness"}
    assert all(protocol.__module__.startswith("outbox.store.base")
               for protocol in FACETS.values())


def test_each_protocol_is_narrow() -> None:
    assert all(len(protocol_verbs(protocol)) <= 25 for protocol in FACETS.values())


@pytest.mark.parametrize("facet", sorted(set(FACETS) - {"liveness"}))
def test_each_sql_facet_implements_its_protocol_exactly(facet: str) -> None:
    store = SqlStore(NoDatabase(), lambda *_: [], LockFiles(Path("unused")))
    implemented = verbs(type(getattr(store, facet)))
    assert implemented == protocol_verbs(FACETS[facet])


@pytest.mark.parametrize("implementation", LIVENESS)
def test_each_liveness_implements_its_protocol_exactly(implementation: type) -> None:
    assert verbs(implementation) == protocol_verbs(base.Liveness)


def test_the_sql_root_implements_the_root_protocol() -> None:
    root = protocol_verbs(base.Store)
    assert set(root) == set(ROOT_VERBS)
    assert {name: verbs(SqlStore)[name] for name in root} == root


def test_every_verb_has_one_facet() -> None:
    names = [verb for _, verb in FACET_VERBS]
    assert len(names) == len(set(names))
    assert not set(names) & set(ROOT_VERBS)
