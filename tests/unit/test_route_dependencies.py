"""Every dependency of every API and UI route is `async def`: FastAPI runs a plain
`def` dependency on its thread pool, a thread hop (and a wait for the GIL) on every
request that uses it; these only read `request.app.state`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import outbox.api
import outbox.ui


def _routers() -> Iterator[tuple[str, APIRouter]]:
    for package in (outbox.api, outbox.ui):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, APIRouter):
                    yield f"{info.name}.{name}", value


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


ROUTES = [(f"{where} {route.path}", route) for where, router in _routers()
          for route in router.routes if isinstance(route, APIRoute)]


def test_the_routers_are_found() -> None:
    assert len(ROUTES) > 50


@pytest.mark.parametrize(("where", "route"), ROUTES, ids=[w for w, _ in ROUTES])
def test_no_route_depends_on_a_plain_function(where: str, route: APIRoute) -> None:
    sync = [getattr(call, "__qualname__", repr(call)) for call in _calls(route.dependant)
            if not inspect.iscoroutinefunction(call)
            and not inspect.iscoroutinefunction(type(call).__call__)]
    assert not sync, f"{where}: plain def dependencies (a thread hop each): {sync}"
