"""Shared fixtures: throwaway MariaDB and Redis servers, and a live server per module and backend.

`database_url` is parametrized over SQLite and MariaDB; on the MariaDB run the app also
uses a real Redis. Missing binaries skip locally with an install hint and fail in CI.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from realtime_cms import subscriptions
from tests.support.hangs import keep_stderr, watched
from tests.support.harness import Harness, make_settings, serving
from tests.support.servers import MariaDBServer, RedisServer, require_binaries

# Domains' in-transaction subscribers hold for every session, as in the server: service
# tests that build their own session factories get them too.
subscriptions.install()

BACKENDS = ("sqlite", "mariadb")
_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    require_binaries(*MariaDBServer.BINARIES)
    with MariaDBServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    require_binaries(*RedisServer.BINARIES)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A fresh, empty database for one test module on the selected backend."""
    name = f"rcms_test_{next(_db_counter)}"
    if backend == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / f"{name}.sqlite3"
        return f"sqlite+aiosqlite:///{path}"
    server: MariaDBServer = request.getfixturevalue("mariadb_server")
    return server.create_database(name)


@pytest.fixture(scope="module")
def redis_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """Real Redis alongside MariaDB (the scaled-out shape); none alongside SQLite (embedded)."""
    if backend == "sqlite":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    """A live server with one logged-in user per default role, shared by a test module."""
    async with serving(make_settings(database_url, redis_url)) as h:
        yield h


def pytest_configure(config: pytest.Config) -> None:
    keep_stderr()
    config.addinivalue_line(
        "markers", "needs_redis: runs on the MariaDB+Redis backend only (it needs two nodes)"
    )
    config.addinivalue_line(
        "markers", "faults: the fault battery (tests/faults): killed services, fuzzed sockets"
    )
    config.addinivalue_line(
        "markers", "only_backend(name): what is tested exists on that backend only"
    )


def _runs_here(item: pytest.Item) -> bool:
    """False for the SQLite run of a test that needs another node through Redis, and for
    the other backend's run of an `only_backend` test."""
    callspec = getattr(item, "callspec", None)
    backend = None if callspec is None else callspec.params.get("backend")
    if backend is None:
        return True
    if backend == "sqlite" and item.get_closest_marker("needs_redis"):
        return False
    only = item.get_closest_marker("only_backend")
    return only is None or backend in only.args


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the runs of a test on a backend it does not apply to."""
    kept, dropped = [], []
    for item in items:
        (kept if _runs_here(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Setup, call and teardown of every test under the hang reporter (tests/support/hangs.py)."""
    with watched(item.nodeid):
        return (yield)
