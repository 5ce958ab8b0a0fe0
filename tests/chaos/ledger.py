"""The chaos ledger: one row per handler execution, one per completion.

``chaos_executions`` gets a row when a handler starts (its own small transaction, so it
survives whatever happens next). ``chaos_completions`` gets a row at the end, in the
same transaction as the job's transactional ack (``worker.ack(job, bind=conn)``): the
row exists if and only if the job was completed by that execution. Neither table has a
unique constraint on the job: "completed more than once" must be countable, not
prevented by the ledger.

All timestamps are ``clock_timestamp()`` on the database server, which runs on this
machine: the runner compares them with its own ``time.time()``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)

metadata = MetaData()

executions = Table(
    "chaos_executions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("scenario", Text, nullable=False),
    Column("job_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column(
        "started", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
)
Index("chaos_executions_scenario_job", executions.c.scenario, executions.c.job_id)

completions = Table(
    "chaos_completions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("scenario", Text, nullable=False),
    Column("job_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("done", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
)
Index("chaos_completions_scenario_done", completions.c.scenario, completions.c.done)

#: application_name of each kind of connection, so faults can pick their targets.
APP_WORKER = "pgq-chaos-worker"
APP_PRODUCER = "pgq-chaos-producer"
APP_RUNNER = "pgq-chaos-runner"
APP_PRESSURE = "pgq-chaos-pressure"

QUEUE = "chaos"
