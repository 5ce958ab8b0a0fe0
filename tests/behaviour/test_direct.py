"""The hot statements sent to the driver connection directly (``pgqueue._direct``).

Every behaviour test already runs them (an engine without ``bind=`` takes this path;
CI runs the behaviour suite again with ``PGQUEUE_DIRECT=0``); here: the results,
errors and disconnect handling are exactly SQLAlchemy's, instrumented engines still
see every statement, the switch turns it off, caches are bounded, and a connection that
fails or is interrupted mid-statement is never handed out again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from pgqueue import (
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    JobSpec,
    Message,
    SyncAdmin,
    SyncConsumer,
    SyncProducer,
    _direct,
    _direct_sql,
    _drive,
    _statements,
)
from pgqueue._plans import Context
from pgqueue._plans.consumer import dequeue
from pgqueue._retry import TRANSIENT
from tests.support.db import SCHEMA, make_async_engine, make_sync_engine, statements_on

JOBS = [
    JobSpec({"n": 1, "nested": {"a": [1, 2.5, None, "é"]}}, priority=3, headers={"h": 1}),
    JobSpec({"n": 2}, dedupe_key="k-2", max_attempts=4, entrypoint="other"),
    JobSpec([1, "two", True]),
]


def _shape(m: Message) -> dict[str, Any]:
    """What must not differ between the two paths: every value that is not an id or a
    time, and the type of every field."""
    fields = dataclasses.asdict(m)
    varying = {"id", "enqueued_at", "available_at", "ready_at", "lease", "locked_by"}
    shape = {k: v for k, v in fields.items() if k not in varying}
    shape["errors"] = [{**e, "at": type(e["at"]).__name__} for e in m.errors or ()]
    shape["types"] = {k: type(v).__name__ for k, v in fields.items()}
    return shape


def _listen(engine: Engine, seen: list[Any]) -> Any:
    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    return record


async def _async_round(engine: AsyncEngine) -> list[dict[str, Any]]:
    await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct", exists_ok=True)
    producer = AsyncProducer(engine, "direct", schema=SCHEMA)
    consumer = AsyncConsumer(engine, "direct", schema=SCHEMA)
    out = [_shape(m) for m in await producer.batch_enqueue(JOBS)]
    out += [_shape(await producer.enqueue({"n": 2}, dedupe_key="k-2", on_duplicate="skip"))]
    leased = await consumer.dequeue(batch_size=10)
    out += [_shape(m) for m in leased]
    assert await consumer.extend_visibility(leased[0], timedelta(seconds=60))
    await consumer.nack(leased[0], error="boom", delay=0)
    again = await consumer.dequeue(batch_size=10)
    out += [_shape(m) for m in again]
    assert await consumer.ack_batch(leased[1:] + again) == [True] * (len(leased) - 1 + len(again))
    await producer.shutdown()
    await consumer.shutdown()
    return out


def _sync_round(engine: Engine) -> list[dict[str, Any]]:
    SyncAdmin(engine, schema=SCHEMA).create_queue("direct", exists_ok=True)
    producer = SyncProducer(engine, "direct", schema=SCHEMA)
    consumer = SyncConsumer(engine, "direct", schema=SCHEMA)
    out = [_shape(m) for m in producer.batch_enqueue(JOBS)]
    out += [_shape(producer.enqueue({"n": 2}, dedupe_key="k-2", on_duplicate="skip"))]
    leased = consumer.dequeue(batch_size=10)
    out += [_shape(m) for m in leased]
    assert consumer.extend_visibility(leased[0], timedelta(seconds=60))
    consumer.nack(leased[0], error="boom", delay=0)
    again = consumer.dequeue(batch_size=10)
    out += [_shape(m) for m in again]
    assert consumer.ack_batch(leased[1:] + again) == [True] * (len(leased) - 1 + len(again))
    producer.shutdown()
    consumer.shutdown()
    return out


def _compiled_for(dialect: Any) -> set[str]:
    """Names of the statements this kind of dialect has sent to its driver directly."""
    cache = _statements.for_schema(SCHEMA).direct
    return {name for (kind, _, name), d in cache.items() if kind is type(dialect) and d is not None}


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_direct_results_match_sqlalchemy_async(clean: URL, driver: str) -> None:
    engine = make_async_engine(clean, driver)
    try:
        seen: list[Any] = []
        record = _listen(engine.sync_engine, seen)
        through_sqlalchemy = await _async_round(engine)  # observed: SQLAlchemy's path
        assert any("FOR UPDATE SKIP LOCKED" in s for s in seen)
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        seen.clear()
        direct = await _async_round(engine)
        assert direct == through_sqlalchemy
        # Only the statements that are not hot went through SQLAlchemy this time.
        assert not any("SKIP LOCKED" in s or "INSERT INTO" in s for s in seen)
        if _direct.ENABLED:  # (CI runs this suite again with PGQUEUE_DIRECT=0 too)
            hot = {"INSERT_ONE_JOB", "DEQUEUE", "FINISH", "NACK", "EXTEND_LEASE"}
            assert hot <= _compiled_for(engine.dialect)
    finally:
        await engine.dispose()


def test_direct_results_match_sqlalchemy_sync(clean: URL) -> None:
    engine = make_sync_engine(clean)
    try:
        seen: list[Any] = []
        record = _listen(engine, seen)
        through_sqlalchemy = _sync_round(engine)
        assert any("FOR UPDATE SKIP LOCKED" in s for s in seen)
        event.remove(engine, "before_cursor_execute", record)
        seen.clear()
        assert _sync_round(engine) == through_sqlalchemy
        assert not any("SKIP LOCKED" in s or "INSERT INTO" in s for s in seen)
    finally:
        engine.dispose()


async def test_instrumented_engine_sees_every_statement(clean: URL) -> None:
    engine = make_async_engine(clean, "asyncpg")
    try:
        await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        producer = AsyncProducer(engine, "direct", schema=SCHEMA)
        consumer = AsyncConsumer(engine, "direct", schema=SCHEMA)
        await producer.register()
        with statements_on(engine) as sent:
            await producer.enqueue({"n": 1})
            (m,) = await consumer.dequeue()
            await consumer.ack(m)
        hot = ("INSERT INTO", "FOR UPDATE SKIP LOCKED", "WITH finished")
        assert all(any(h in s for s in sent) for h in hot), sent
    finally:
        await engine.dispose()


#: DEQUEUE's parameters but its LIMIT, for the tests that prepare it without a database.
_DEQUEUE_PARAMS = {
    "b_queue": "q",
    "b_consumer": "c",
    "b_visibility_timeout": None,
    "b_entrypoints": None,
    "b_done_channel": "pgqueue-done",
}


def test_dequeue_limit_is_part_of_the_sql() -> None:
    """A literal LIMIT lets PostgreSQL keep a generic plan for the prepared DEQUEUE
    (with ``LIMIT $n`` it planned again at every execution)."""
    from sqlalchemy.dialects.postgresql import asyncpg, psycopg

    dialects: list[Any] = [asyncpg.dialect(), psycopg.dialect()]  # type: ignore[no-untyped-call]
    for dialect in dialects:
        d = _direct_sql.compiled_for(
            _statements.for_schema(SCHEMA).DEQUEUE, dialect, _statements.for_schema(SCHEMA)
        )
        assert d is not None
        sql7, args7 = d.prepare({**_DEQUEUE_PARAMS, "b_limit": 7})
        sql9, _ = d.prepare({**_DEQUEUE_PARAMS, "b_limit": 9})
        assert sql7.count("LIMIT 7") == 3 and sql9.count("LIMIT 9") == 3
        if isinstance(args7, list):  # asyncpg: not a parameter any more
            highest = max(int(n) for n in re.findall(r"\$(\d+)", sql7))
            assert len(args7) == highest and 7 not in args7


def test_psycopg_statements_are_numbered_once_for_its_raw_cursor() -> None:
    """psycopg's ``%(name)s`` text is numbered once ($1, $2 ...; a name used twice keeps
    its number, a doubled % is one again) and sent through a RawCursor: psycopg parsed
    a named query at every execution past 4,096 bytes, DEQUEUE among them."""
    from sqlalchemy.dialects.postgresql import psycopg

    sql, names = _direct_sql._numbered(
        "SELECT %(a)s, %(b)s, %(a)s, 5 %% 2, '%%(a)s'", None, positional=False
    )
    assert sql == "SELECT $1, $2, $1, 5 % 2, '%(a)s'" and names == ("a", "b")
    statements = _statements.for_schema(SCHEMA)
    d = _direct_sql.compiled_for(statements.DEQUEUE, psycopg.dialect(), statements)  # type: ignore[no-untyped-call]
    assert d is not None and "%(" not in d.sql and len(d.sql.encode()) > 4096
    sql7, args7 = d.prepare({**_DEQUEUE_PARAMS, "b_limit": 7})
    assert "LIMIT 7" in sql7 and "%(" not in sql7
    assert len(args7) == max(int(n) for n in re.findall(r"\$(\d+)", sql7))


def test_a_psycopg_result_with_rows_is_told_by_its_status(clean: URL) -> None:
    """The direct path reads a psycopg result's status (libpq's TUPLES_OK), not
    ``cursor.description``: a statement with no rows gives (), one with rows its rows,
    even none of them."""
    from psycopg import pq

    assert pq.ExecStatus.TUPLES_OK == _direct._TUPLES_OK
    engine = make_sync_engine(clean)
    try:
        with engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute("SELECT 1 WHERE false")
                assert _direct._rows(cur) and cur.fetchall() == []
                cur.execute("SET application_name = 'direct'")
                assert not _direct._rows(cur)
    finally:
        engine.dispose()


def _terminate(url: URL, pid: int) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    engine.dispose()


def test_held_connection_lost_is_replaced_sync(clean: URL) -> None:
    engine = make_sync_engine(clean)
    try:
        SyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        ctx = Context(SCHEMA, "direct")
        held = _drive.Held(engine)
        assert held.run(dequeue(ctx, "me", 5, None), ctx) == []
        assert held._conn is not None
        raw: Any = held._conn.connection.driver_connection
        pid = raw.info.backend_pid
        _terminate(clean, pid)
        with pytest.raises(DBAPIError) as lost:
            held.run(dequeue(ctx, "me", 5, None), ctx)
        assert lost.value.connection_invalidated
        assert held.run(dequeue(ctx, "me", 5, None), ctx) == []  # a new connection
        held.close()
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_held_connection_lost_is_replaced_async(clean: URL, driver: str) -> None:
    engine = make_async_engine(clean, driver)
    try:
        await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        ctx = Context(SCHEMA, "direct")
        held = _drive.AsyncHeld(engine)
        assert await held.run(dequeue(ctx, "me", 5, None), ctx) == []
        assert held._conn is not None
        raw: Any = (await held._conn.get_raw_connection()).driver_connection
        pid = raw.get_server_pid() if driver == "asyncpg" else raw.info.backend_pid
        await asyncio.to_thread(_terminate, clean, pid)
        with pytest.raises(DBAPIError):
            await held.run(dequeue(ctx, "me", 5, None), ctx)
        assert await held.run(dequeue(ctx, "me", 5, None), ctx) == []
        await held.close()
    finally:
        await engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_cancelled_mid_statement_never_reuses_the_connection(clean: URL, driver: str) -> None:
    """An ack cancelled while blocked on a row lock: its connection (in the middle of
    a statement) is discarded, not returned to the pool for the next call."""
    engine = make_async_engine(clean, driver, pool_size=1, max_overflow=0)
    blocker = make_sync_engine(clean)
    try:
        await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        producer = AsyncProducer(engine, "direct", schema=SCHEMA)
        consumer = AsyncConsumer(engine, "direct", schema=SCHEMA)
        await producer.enqueue({"n": 1})
        (m,) = await consumer.dequeue()
        with blocker.begin() as conn:
            conn.execute(
                text(f"SELECT 1 FROM {SCHEMA}.pgqueue_jobs WHERE id = :id FOR UPDATE"),
                {"id": m.id},
            )
            task = asyncio.create_task(consumer.ack(m))
            await asyncio.sleep(0.5)
            assert not task.done()  # waiting for the row lock
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # The pool's one connection must work: a reused mid-statement connection
        # would fail with "another operation is in progress". (The cancelled ack itself
        # may still have run on the server once the lock was free: then the job is
        # already complete and this ack finds nothing. Either way, exactly once.)
        await consumer.ack(m)
        assert await producer.enqueue({"n": 2})
        async with engine.connect() as conn:
            left = await conn.execute(
                text(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs WHERE id = :id"), {"id": m.id}
            )
            assert left.scalar() == 0
    finally:
        blocker.dispose()
        await engine.dispose()


def test_payload_json_round_trips_as_sqlalchemy_would(clean: URL) -> None:
    """Direct rows decode JSON with the driver's loader, as SQLAlchemy's do."""
    engine = make_sync_engine(clean)
    try:
        SyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        payload = {"f": 1.5, "i": 2**53 + 1, "s": "x\u00e9\U0001f600", "l": [None, True]}
        SyncProducer(engine, "direct", schema=SCHEMA).enqueue(payload)
        (m,) = SyncConsumer(engine, "direct", schema=SCHEMA).dequeue()
        assert m.payload == payload
        assert type(m.payload["i"]) is int and type(m.payload["f"]) is float
    finally:
        engine.dispose()


def test_pool_connection_is_handed_back_as_it_was_sync(clean: URL) -> None:
    """The producer's statements run in autocommit on a pool connection; the next user
    of that connection gets it back in a transaction as usual (a rollback undoes)."""
    engine = make_sync_engine(clean, pool_size=1, max_overflow=0)
    try:
        SyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        producer = SyncProducer(engine, "direct", schema=SCHEMA)
        producer.enqueue({"n": 1})
        with engine.connect() as conn:
            conn.execute(text(f"DELETE FROM {SCHEMA}.pgqueue_jobs"))
            conn.rollback()
        producer.enqueue({"n": 2})
        with engine.connect() as conn:
            count = conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs")).scalar()
        assert count == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_pool_connection_is_handed_back_as_it_was_async(clean: URL, driver: str) -> None:
    engine = make_async_engine(clean, driver, pool_size=1, max_overflow=0)
    try:
        await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        producer = AsyncProducer(engine, "direct", schema=SCHEMA)
        await producer.enqueue({"n": 1})
        async with engine.connect() as conn:
            await conn.execute(text(f"DELETE FROM {SCHEMA}.pgqueue_jobs"))
            await conn.rollback()
        await producer.enqueue({"n": 2})
        async with engine.connect() as conn:
            count = (
                await conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.pgqueue_jobs"))
            ).scalar()
        assert count == 2
    finally:
        await engine.dispose()


async def test_empty_batches_touch_nothing(clean: URL) -> None:
    """Plans that finish before their first statement (an empty batch) return at once."""
    engine = make_async_engine(clean, "asyncpg", pool_size=1, max_overflow=0)
    sync = make_sync_engine(clean, pool_size=1, max_overflow=0)
    try:
        await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        assert await AsyncConsumer(engine, "direct", schema=SCHEMA).ack_batch([]) == []
        assert await AsyncProducer(engine, "direct", schema=SCHEMA).batch_enqueue([]) == []
        assert SyncConsumer(sync, "direct", schema=SCHEMA).ack_batch([]) == []
    finally:
        sync.dispose()
        await engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_unreachable_database_is_a_dbapi_error_async(clean: URL, driver: str) -> None:
    """A pool connection that cannot be made fails as ``engine.connect()`` fails (a
    DBAPIError or OSError, which the worker loops retry), never as the DBAPI's own
    exception class (which they would not recognise)."""
    nowhere = clean.set(host="127.0.0.1", port=1)
    engine = make_async_engine(nowhere, driver)
    try:
        producer = AsyncProducer(engine, "direct", schema=SCHEMA)
        with pytest.raises(TRANSIENT):
            await producer.extend_visibility(1, 30)
    finally:
        await engine.dispose()


def test_unreachable_database_is_a_dbapi_error_sync(clean: URL) -> None:
    engine = make_sync_engine(clean.set(host="127.0.0.1", port=1))
    try:
        with pytest.raises(TRANSIENT):
            SyncProducer(engine, "direct", schema=SCHEMA).extend_visibility(1, 30)
    finally:
        engine.dispose()


def test_watched_engines_keep_sqlalchemys_path(clean: URL) -> None:
    """Statement logging through the ``sqlalchemy.engine`` logger, execute listeners
    and handle_error hooks all see (or steer) every statement."""
    import logging

    engine = make_sync_engine(clean)
    try:
        assert not _direct._observed(engine)
        logger = logging.getLogger("sqlalchemy.engine")
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            assert _direct._observed(engine)
        finally:
            logger.setLevel(level)
        assert not _direct._observed(engine)
        for name in ("handle_error", "before_execute", "after_cursor_execute"):

            def hook(*args: Any, **kw: Any) -> None:
                return None

            event.listen(engine, name, hook)
            assert _direct._observed(engine), name
            event.remove(engine, name, hook)
        assert not _direct._observed(engine)
    finally:
        engine.dispose()


async def test_asyncpg_told_not_to_cache_statements_keeps_sqlalchemys_path(clean: URL) -> None:
    """SQLAlchemy's PgBouncer recipe for asyncpg (no prepared statement cache, or
    statements named by a function): asyncpg's own cache would not follow it."""
    plain = make_async_engine(clean, "asyncpg")
    uncached = make_async_engine(
        clean, "asyncpg", connect_args={"prepared_statement_cache_size": 0}
    )
    try:
        for engine, capable in ((plain, True), (uncached, False)):
            async with engine.connect() as conn:
                fairy = await conn.get_raw_connection()
                assert _direct.capable(fairy.dbapi_connection, conn.dialect) is capable
        await AsyncAdmin(uncached, schema=SCHEMA).create_queue("direct")
        producer = AsyncProducer(uncached, "direct", schema=SCHEMA)
        consumer = AsyncConsumer(uncached, "direct", schema=SCHEMA)
        await producer.enqueue({"n": 1})
        (m,) = await consumer.dequeue()
        assert await consumer.ack(m)
    finally:
        await plain.dispose()
        await uncached.dispose()


def test_an_exhausted_pool_is_transient() -> None:
    """Worker loops wait and retry on it (a settle that gave up would run jobs again)."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    assert issubclass(PoolTimeout, TRANSIENT)


# --------------------------------------------------------------------------- SQLAlchemy's way
FACES = ["asyncpg", "psycopg-async", "psycopg-sync"]


async def _enqueue_on(face: str, url: URL, payload: Any, **engine_kw: Any) -> None:
    """One enqueue through a fresh engine of ``face`` (disposed after)."""
    if face == "psycopg-sync":
        engine = make_sync_engine(url, **engine_kw)
        try:
            SyncProducer(engine, "direct", schema=SCHEMA).enqueue(payload)
        finally:
            engine.dispose()
        return
    aengine = make_async_engine(url, face.split("-")[0], **engine_kw)
    try:
        await AsyncProducer(aengine, "direct", schema=SCHEMA).enqueue(payload)
    finally:
        await aengine.dispose()


@pytest.mark.parametrize("face", FACES)
async def test_driver_errors_are_what_sqlalchemy_raises(clean: URL, face: str) -> None:
    """A database error on the direct path is the DBAPIError subclass SQLAlchemy's own
    path raises (IntegrityError for a unique violation), with the same original
    error class, and shows or hides its parameters as ``hide_parameters`` says."""
    sync = make_sync_engine(clean)
    index = f"{SCHEMA}.pgq_test_unique_u"
    try:
        SyncAdmin(sync, schema=SCHEMA).create_queue("direct")
        with sync.begin() as conn:
            conn.execute(
                text(
                    f"CREATE UNIQUE INDEX pgq_test_unique_u ON {SCHEMA}.pgqueue_jobs "
                    "((payload->>'u'))"
                )
            )
        await _enqueue_on(face, clean, {"u": "secret-1"})
        seen: dict[tuple[bool, bool], DBAPIError] = {}
        for direct in (True, False):
            for hide in (True, False):
                options = {"execution_options": {"pgqueue_direct": direct}}
                with pytest.raises(DBAPIError) as info:
                    await _enqueue_on(
                        face, clean, {"u": "secret-1"}, hide_parameters=hide, **options
                    )
                seen[direct, hide] = info.value
        for hide in (True, False):
            on, off = seen[True, hide], seen[False, hide]
            assert type(on) is type(off) and type(on).__name__ == "IntegrityError"
            assert type(on.orig) is type(off.orig)
            # (The server's own DETAIL line names the key whatever the client hides.)
            assert ("[parameters:" in str(on)) == ("[parameters:" in str(off)) == (not hide)
            assert ("parameters hidden" in str(on)) == ("parameters hidden" in str(off)) == hide
            assert on.connection_invalidated is off.connection_invalidated is False
    finally:
        with sync.begin() as conn:
            conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
        sync.dispose()


def _terminate_all(url: URL) -> int:
    """Terminate every other backend of the test database; how many."""
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend'"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def _raw_asyncpg() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.exceptions.InternalClientError, asyncpg.exceptions.InterfaceError)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "sqlalchemy"])
@pytest.mark.parametrize("face", FACES)
async def test_every_backend_terminated_costs_at_most_one_failed_call(
    clean: URL, face: str, direct: bool
) -> None:
    """A disconnect invalidates the whole pool, as SQLAlchemy's ``Connection`` does: a
    server that dropped every pooled connection costs one failed call, not one per
    pooled connection."""
    options = {"execution_options": {"pgqueue_direct": direct}, "pool_size": 4}
    failures = 0
    if face == "psycopg-sync":
        engine = make_sync_engine(clean, **options)
        try:
            SyncAdmin(engine, schema=SCHEMA).create_queue("direct")
            consumer = SyncConsumer(engine, "direct", schema=SCHEMA)
            held = [engine.connect() for _ in range(4)]  # fill the pool with 4
            for c in held:
                c.execute(text("SELECT 1"))
                c.close()
            assert _terminate_all(clean) >= 4
            for _ in range(8):
                try:
                    consumer.dequeue()
                except TRANSIENT:
                    failures += 1
        finally:
            engine.dispose()
    else:
        aengine = make_async_engine(clean, face.split("-")[0], **options)
        try:
            await AsyncAdmin(aengine, schema=SCHEMA).create_queue("direct")
            aconsumer = AsyncConsumer(aengine, "direct", schema=SCHEMA)
            aheld = [await aengine.connect() for _ in range(4)]
            for ac in aheld:
                await ac.execute(text("SELECT 1"))
                await ac.close()
            assert await asyncio.to_thread(_terminate_all, clean) >= 4
            # SQLAlchemy 2.0's own asyncpg path can let asyncpg's InternalClientError
            # ("another operation is in progress") through untranslated from a terminated
            # connection (sqlalchemy/sqlalchemy#13241); the direct path never does.
            counted: tuple[type[BaseException], ...] = TRANSIENT
            if not direct and sqlalchemy.__version__ < "2.1":
                counted += _raw_asyncpg()
            for _ in range(8):
                try:
                    await aconsumer.dequeue()
                except counted:
                    failures += 1
        finally:
            await aengine.dispose()
    if direct or sqlalchemy.__version__ >= "2.1":
        assert failures <= 1
    # (SQLAlchemy 2.0's own asyncpg path does not see every dropped connection as a
    # disconnect, so on the declared floor its pool costs more than one failed call.)


async def test_the_switch_turns_the_direct_path_off(
    clean: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``execution_options(pgqueue_direct=False)`` on an engine (and PGQUEUE_DIRECT=0
    for the whole process) sends every statement through SQLAlchemy."""
    import subprocess
    import sys

    engine = make_async_engine(clean, "asyncpg").execution_options(pgqueue_direct=False)
    sync = make_sync_engine(clean).execution_options(pgqueue_direct=False)
    assert _direct.dialect_for(engine.sync_engine) is None and _direct.dialect_for(sync) is None

    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the direct path was used")

    monkeypatch.setattr(_direct, "pooled", refuse)
    monkeypatch.setattr(_direct.Sender, "__call__", refuse)
    monkeypatch.setattr(_direct.AsyncSender, "__call__", refuse)
    try:
        await AsyncAdmin(engine, schema=SCHEMA).create_queue("direct")
        await AsyncProducer(engine, "direct", schema=SCHEMA).enqueue({"n": 1})
        SyncProducer(sync, "direct", schema=SCHEMA).enqueue({"n": 2})
        consumer = AsyncConsumer(engine, "direct", schema=SCHEMA)
        assert await consumer.ack_batch(await consumer.dequeue(5)) == [True, True]
    finally:
        sync.dispose()
        await engine.dispose()
    code = "import pgqueue._direct as d; print(d.ENABLED)"
    for value, expected in (("0", "False"), ("1", "True")):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**__import__("os").environ, "PGQUEUE_DIRECT": value},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected


def test_statements_per_schema_are_a_bounded_cache() -> None:
    """Each schema's statements cost tens of milliseconds and about a megabyte: the
    most recently used ones are kept, not every schema ever named."""
    info = _statements.for_schema.cache_info()
    assert info.maxsize == _statements.CACHED_SCHEMAS
    for i in range(_statements.CACHED_SCHEMAS + 3):
        _statements.for_schema(f"pgq_bounded_{i}")
    assert _statements.for_schema.cache_info().currsize <= _statements.CACHED_SCHEMAS
    assert _statements.for_schema(SCHEMA).DEQUEUE is _statements.for_schema(SCHEMA).DEQUEUE


async def _use_once(face: str, url: URL, n: int) -> Any:
    """Enqueue and dequeue through a new engine, dispose of it; a weak reference to its
    dialect (the engine and everything pgqueue made for it are gone from the stack)."""
    import weakref

    if face == "psycopg-sync":
        engine = make_sync_engine(url)
        SyncProducer(engine, "direct", schema=SCHEMA).enqueue({"n": n})
        SyncConsumer(engine, "direct", schema=SCHEMA).dequeue()
        engine.dispose()
        return weakref.ref(engine.dialect)
    aengine = make_async_engine(url, face.split("-")[0])
    await AsyncProducer(aengine, "direct", schema=SCHEMA).enqueue({"n": n})
    await AsyncConsumer(aengine, "direct", schema=SCHEMA).dequeue()
    await aengine.dispose()
    return weakref.ref(aengine.sync_engine.dialect)


@pytest.mark.parametrize("face", FACES)
async def test_engines_come_and_go_without_leaking(clean: URL, face: str) -> None:
    """An engine used once and disposed leaves nothing of its own behind in pgqueue's
    caches (compiled statements are kept per kind of dialect, not per engine)."""
    import gc

    admin = make_sync_engine(clean)
    SyncAdmin(admin, schema=SCHEMA).create_queue("direct")
    admin.dispose()
    refs = [await _use_once(face, clean, n) for n in range(20)]
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= 1, f"{alive} of {len(refs)} dialects still alive"
