"""The connection an AsyncProducer keeps between back-to-back calls (``pgqueue._kept``).

Async face only: the sync face takes a pool connection per call. Each test counts the
pool's checkouts and what is checked out, around real enqueues on asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import AsyncAdmin, AsyncProducer, QueueNotFound, _direct
from tests.support.db import SCHEMA, make_async_engine

pytestmark = pytest.mark.timeout(60)

APP = "pgqueue-kept-test"
#: Whether the direct path is on (CI runs the suite again with PGQUEUE_DIRECT=0, where
#: every call takes a pool connection through SQLAlchemy and nothing is kept).
KEEPS = _direct.ENABLED


def engine_of(url: URL, driver: str = "asyncpg", **kw: Any) -> AsyncEngine:
    if driver == "asyncpg":
        kw.setdefault("connect_args", {"server_settings": {"application_name": APP}})
    else:
        kw.setdefault("connect_args", {"application_name": APP})
    return make_async_engine(url, driver, **kw)


class Checkouts:
    """Counts the pool's checkouts of ``engine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self.pool = engine.sync_engine.pool
        event.listen(engine.sync_engine, "checkout", self._hit)

    def _hit(self, *_: Any) -> None:
        self.count += 1

    @property
    def out(self) -> int:
        """Connections checked out now."""
        return int(self.pool.checkedout())  # type: ignore[attr-defined]


@dataclass
class Setup:
    engine: AsyncEngine
    producer: AsyncProducer
    seen: Checkouts


async def producer_on(engine: AsyncEngine) -> AsyncProducer:
    admin = AsyncAdmin(engine, schema=SCHEMA)
    await admin.create_queue("kept")
    producer = AsyncProducer(engine, "kept", schema=SCHEMA, listen=False)
    await producer.register()
    return producer


async def count_jobs(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'kept'"))
        return int(found.scalar_one())


@asynccontextmanager
async def producing(url: URL, driver: str = "asyncpg", **kw: Any) -> AsyncIterator[Setup]:
    """An engine, a registered producer on it, and its pool's checkouts counted from
    then on; the producer shut down and the engine disposed at the end."""
    engine = engine_of(url, driver, **kw)
    try:
        producer = await producer_on(engine)
        yield Setup(engine, producer, Checkouts(engine))
        await producer.shutdown()
    finally:
        await engine.dispose()


async def test_back_to_back_enqueues_share_one_checkout_given_back_at_the_next_turn(
    clean: URL,
) -> None:
    async with producing(clean) as t:
        for i in range(50):
            await t.producer.enqueue({"i": i})
        await t.producer.batch_enqueue([{"i": i} for i in range(50, 60)])
        assert t.seen.count == (1 if KEEPS else 51)
        assert t.seen.out == int(KEEPS)  # kept: nothing else ran on the loop since
        await asyncio.sleep(0)
        assert t.seen.out == 0  # the loop turned with no call in flight
        assert await count_jobs(t.engine) == 60


async def test_a_caller_waiting_on_a_pool_of_one_gets_it_at_the_next_turn(clean: URL) -> None:
    async with producing(clean, pool_size=1, max_overflow=0, pool_timeout=5) as t:
        for _ in range(3):
            await t.producer.enqueue({"n": 1})
            # The only connection is kept here; asking the pool for it turns the loop.
            async with t.engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        assert await count_jobs(t.engine) == 3


async def test_concurrent_enqueues_take_connections_of_their_own(clean: URL) -> None:
    async with producing(clean, pool_size=4, max_overflow=0, pool_timeout=5) as t:

        async def burst(k: int) -> None:
            for i in range(25):
                await t.producer.enqueue({"k": k, "i": i})

        await asyncio.gather(*(burst(k) for k in range(4)))
        await asyncio.sleep(0)
        assert t.seen.out == 0
        assert t.seen.count > 1  # one task at a time uses the kept one
        assert await count_jobs(t.engine) == 100


async def test_an_error_gives_the_connection_back_at_once(clean: URL) -> None:
    async with producing(clean) as t:
        await t.producer.enqueue({"n": 1})
        assert t.seen.out == int(KEEPS)
        await AsyncAdmin(t.engine, schema=SCHEMA).delete_queue("kept")
        missing = AsyncProducer(t.engine, "kept", schema=SCHEMA, listen=False)
        with pytest.raises(QueueNotFound):
            await missing.enqueue({"n": 2})
        # Its INSERT found no queue; the kept connection went back before the check
        # that runs through SQLAlchemy, and nothing is left out after the error.
        assert t.seen.out == 0
        await missing.shutdown()


async def test_a_kept_connection_lost_with_the_server_is_not_used_again(clean: URL) -> None:
    if not KEEPS:
        pytest.skip("nothing is kept with the direct path off")
    async with producing(clean) as t:
        await t.producer.enqueue({"n": 1})
        assert t.seen.out == 1
        # Kill the kept connection's backend without turning the loop (a sync client).
        url = clean.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (APP,),
            )
        with pytest.raises(DBAPIError) as lost:
            await t.producer.enqueue({"n": 2})
        assert lost.value.connection_invalidated
        assert t.seen.out == 0  # given back (invalidated) with the error
        await t.producer.enqueue({"n": 3})  # a fresh connection
        assert await count_jobs(t.engine) == 2


async def test_shutdown_gives_the_kept_connection_back(clean: URL) -> None:
    async with producing(clean) as t:
        await t.producer.enqueue({"n": 1})
        assert t.seen.out == int(KEEPS)
        await t.producer.shutdown()
        assert t.seen.out == 0


def test_a_loop_that_stops_right_after_an_enqueue_leaves_nothing_checked_out(
    clean: URL,
) -> None:
    """``run_until_complete`` stops the loop as soon as the enqueue returns: the
    connection must be back by then, not in a task the stopped loop never runs."""
    loop = asyncio.new_event_loop()
    try:
        engine = engine_of(clean)
        seen = Checkouts(engine)
        producer = loop.run_until_complete(producer_on(engine))
        loop.run_until_complete(producer.enqueue({"n": 1}))
        assert seen.out == 0
        loop.run_until_complete(engine.dispose())
    finally:
        loop.close()


async def test_psycopg_takes_a_connection_per_call(clean: URL) -> None:
    async with producing(clean, "psycopg") as t:
        for i in range(5):
            await t.producer.enqueue({"i": i})
        assert t.seen.count == 5
        assert t.seen.out == 0
