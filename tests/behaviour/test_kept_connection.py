"""The connection an AsyncProducer keeps between back-to-back calls (``pgqueue._kept``).

Async face only: the sync face takes a pool connection per call. Each test counts the
pool's checkouts and what is checked out, around real enqueues on asyncpg.
"""

from __future__ import annotations

import asyncio
import logging
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
from sqlalchemy.pool import NullPool

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
    """Counts the pool's checkouts of ``engine``, and logs its checkouts and checkins
    as ``("out" | "in", connection)`` in order."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self.log: list[tuple[str, int]] = []
        event.listen(engine.sync_engine, "checkout", self._out)
        event.listen(engine.sync_engine, "checkin", self._in)

    def _out(self, dbapi_connection: Any, *_: Any) -> None:
        self.count += 1
        self.log.append(("out", id(dbapi_connection)))

    def _in(self, dbapi_connection: Any, *_: Any) -> None:
        self.log.append(("in", id(dbapi_connection)))

    @property
    def out(self) -> int:
        """Connections checked out now (and not given back)."""
        return sum(1 if kind == "out" else -1 for kind, _ in self.log)


@dataclass
class Setup:
    engine: AsyncEngine
    producer: AsyncProducer
    seen: Checkouts


async def producer_on(engine: AsyncEngine, register: bool = True) -> AsyncProducer:
    admin = AsyncAdmin(engine, schema=SCHEMA)
    await admin.create_queue("kept")
    producer = AsyncProducer(engine, "kept", schema=SCHEMA, listen=False)
    if register:  # (a registered producer's shutdown runs a statement of its own)
        await producer.register()
    return producer


async def count_jobs(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT count(*) FROM pgqueue_jobs WHERE queue = 'kept'"))
        return int(found.scalar_one())


async def all_back(t: Setup, jobs: int) -> None:
    """After a few turns of the loop (a give-back in a task included), every connection
    is back and the queue holds ``jobs`` jobs."""
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert t.seen.out == 0
    assert await count_jobs(t.engine) == jobs


@asynccontextmanager
async def producing(
    url: URL, driver: str = "asyncpg", register: bool = True, **kw: Any
) -> AsyncIterator[Setup]:
    """An engine, a producer on it, and its pool's checkouts counted from then on; the
    producer shut down and the engine disposed at the end."""
    engine = engine_of(url, driver, **kw)
    try:
        producer = await producer_on(engine, register)
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
        await asyncio.sleep(0)  # the first producer's connection goes back
        assert t.seen.out == 0
        t.seen.log.clear()
        with pytest.raises(QueueNotFound):
            await missing.enqueue({"n": 2})
        # Its INSERT found no queue; the connection it took went back before the check
        # that runs through SQLAlchemy took one, and nothing is left out after the error.
        assert t.seen.out == 0
        if KEEPS:
            (kind, first), (then, same) = t.seen.log[:2]
            assert (kind, then, same) == ("out", "in", first)
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
    async with producing(clean, register=False) as t:
        await t.producer.enqueue({"n": 1})
        assert t.seen.out == int(KEEPS)
        await t.producer.shutdown()  # (unregistered: no statement of its own)
        assert t.seen.out == 0


async def test_shutdown_during_a_call_lets_the_call_give_it_back(clean: URL) -> None:
    """A producer shut down while its enqueue waits on a lock: the enqueue goes on on
    its connection, gives it back when it ends, and nothing else runs on it meanwhile."""
    async with producing(clean, register=False, pool_size=2, max_overflow=0) as t:
        blocker = engine_of(clean)
        try:
            async with blocker.begin() as conn:
                await conn.execute(text(f"LOCK TABLE {SCHEMA}.pgqueue_jobs"))
                call = asyncio.create_task(t.producer.enqueue({"n": 1}))
                await asyncio.sleep(0.3)  # its INSERT waits for the lock
                assert not call.done()
                await t.producer.shutdown()
                other = AsyncProducer(t.engine, "kept", schema=SCHEMA, listen=False)
                second = asyncio.create_task(other.enqueue({"n": 2}))
                await asyncio.sleep(0.1)
            await call  # the lock is gone with the transaction
            await second
            await other.shutdown()
            await asyncio.sleep(0)
            assert t.seen.out == 0
            assert await count_jobs(t.engine) == 2
        finally:
            await blocker.dispose()


async def test_no_pool_queue_no_keeping(clean: URL, caplog: pytest.LogCaptureFixture) -> None:
    """A NullPool closes what it is given back: nothing is kept, nothing logged."""
    async with producing(clean, poolclass=NullPool) as t:
        for i in range(5):
            await t.producer.enqueue({"i": i})
        assert t.seen.count == 5
        assert t.seen.out == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_overflow_connections_are_closed_quietly(
    clean: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections past ``pool_size`` are closed when given back: by the call that
    used one (it is not kept), or by a task if the pool filled by the next turn."""
    async with producing(clean, pool_size=1, max_overflow=6, pool_timeout=5) as t:

        async def burst(k: int) -> None:
            for i in range(20):
                await t.producer.enqueue({"k": k, "i": i})

        await asyncio.gather(*(burst(k) for k in range(6)))
        await all_back(t, jobs=120)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_kept_connection_the_full_pool_would_close_goes_back_in_a_task(
    clean: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """Kept while the pool's queue had room, then the queue filled before the loop
    turned: given back now, the pool closes it, which waits for the server (so not from
    the loop's callback: from a task of its own)."""
    async with producing(clean, register=False, pool_size=1, max_overflow=2) as t:
        other = await t.engine.connect()  # the pool's one queued connection
        await t.producer.enqueue({"n": 1})  # on an overflow connection, kept
        await other.close()  # back into the queue without a turn of the loop: it is full
        await all_back(t, jobs=1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_engine_disposed_of_right_after_an_enqueue_closes_the_kept_connection(
    clean: URL,
) -> None:
    async with producing(clean, register=False) as t:
        await t.producer.enqueue({"n": 1})
        await t.engine.dispose()  # with the connection kept (checked out)
        await asyncio.sleep(0)
        url = clean.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as admin:
            left = -1
            for _ in range(50):
                found = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (APP,),
                ).fetchone()
                left = found[0] if found else -1
                if left == 0:
                    break
                await asyncio.sleep(0.05)
        assert left == 0


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
