"""Ledger tables: what the handlers and consumers of the tests record, per job, so that
a test can prove in SQL that every job was completed exactly once.

No ledger has a unique constraint on the job: "completed more than once" must be
countable, not prevented by the ledger. Timestamps are ``clock_timestamp()`` on the
database server, the clock every process shares.

- :func:`worker_ledger`: one row per handler execution of tests/support/worker_app.py
  (and of the PgBouncer test's consumers), ``finished`` set when it completed.
- :func:`poison_ledger`: one row per execution of tests/support/poison_app.py.
- :func:`consumer_ledger`: one row per completion of tests/support/consumers.py,
  written in the ack's own transaction.
- :data:`chaos_executions` / :data:`chaos_completions`: the chaos runner's
  (tests/system/chaos): an execution row when a handler starts, a completion row in the
  same transaction as the job's transactional ack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from pgqueue import Message


def _ledger(name: str, metadata: MetaData, *columns: Column[Any]) -> Table:
    """A ledger: a row id, the job it is about, then ``columns``."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("job_id", BigInteger, nullable=False),
        *columns,
    )


def _clock(name: str, nullable: bool = False) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def worker_ledger(schema: str | None) -> Table:
    """One row per handler execution. ``leased``: when the job was dequeued for it (the
    DEQUEUE statement's timestamp, from the lease expiry it set), ``started`` and
    ``finished``: the handler's own start and end; all on the database clock."""
    return _ledger(
        "worker_ledger",
        MetaData(schema=schema),
        Column("queue", Text, nullable=False),
        Column("entrypoint", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("payload", JSONB),
        Column("worker", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        _clock("leased"),
        _clock("started"),
        _clock("finished", nullable=True),
    )


def execution(job: Message, worker: str, pid: int) -> dict[str, Any]:
    """The values of a :func:`worker_ledger` row about ``job`` (but its times)."""
    return {
        "job_id": job.id,
        "queue": job.queue,
        "entrypoint": job.entrypoint,
        "attempts": job.attempts,
        "payload": job.payload,
        "worker": worker,
        "pid": pid,
    }


def poison_ledger(schema: str | None) -> Table:
    """One row per execution of the poison app, committed before the process may die."""
    return _ledger(
        "poison_ledger",
        MetaData(schema=schema),
        Column("entrypoint", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("finished", Boolean, nullable=False, default=False),
    )


def consumer_ledger(schema: str) -> Table:
    """Where consumers record each completion, in the ack's own transaction."""
    return Table(
        "ledger",
        MetaData(schema=schema),
        Column("job_id", BigInteger, nullable=False),
        Column("n", Integer, nullable=False),
        Column("consumer", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
    )


def consumer_rows(
    messages: Sequence[Message], name: str, done: Sequence[bool] | None = None
) -> list[dict[str, Any]]:
    """The :func:`consumer_ledger` rows of the ``messages`` whose ack returned True (all
    of them, without ``done``), completed by consumer ``name``."""
    acked = [True] * len(messages) if done is None else done
    return [
        {"job_id": m.id, "n": m.payload["n"], "consumer": name, "attempts": m.attempts}
        for m, ok in zip(messages, acked, strict=True)
        if ok
    ]


def fresh(engine: Engine, ledger: Table) -> None:
    """Create ``ledger`` if it is missing, and empty it."""
    with engine.begin() as conn:
        ledger.create(conn, checkfirst=True)
        conn.execute(text(f"TRUNCATE {ledger.name}"))


# --------------------------------------------------------------------------- chaos
chaos_metadata = MetaData()


def _chaos(name: str, *columns: Column[Any]) -> Table:
    """A chaos ledger: the scenario, the job's sequence number and the process's pid."""
    return _ledger(
        name,
        chaos_metadata,
        Column("scenario", Text, nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("pid", Integer, nullable=False),
        *columns,
    )


#: A row when a handler starts (its own small transaction: it survives what follows).
chaos_executions = _chaos(
    "chaos_executions",
    Column("attempts", Integer, nullable=False),
    Column(
        "started", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
)
Index("chaos_executions_scenario_job", chaos_executions.c.scenario, chaos_executions.c.job_id)

#: A row in the same transaction as the job's ack: it exists iff that execution completed it.
chaos_completions = _chaos(
    "chaos_completions",
    Column("done", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
)
Index("chaos_completions_scenario_done", chaos_completions.c.scenario, chaos_completions.c.done)
