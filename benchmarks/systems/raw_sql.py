"""The minimal job queue the raw-driver ceilings run: one table, four statements, and
the async worker loop both async drivers run over it.

No queue column, priorities, attempts, lease tokens, heartbeats or archive: the least
SQL that still gives at-least-once hand-out to many workers (SKIP LOCKED) and an idle
wake-up (NOTIFY in the insert statement, as pgqueue does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from common import Probe, start_probe

Row = TypeVar("Row")

#: Jobs a raw worker claims per round trip: what a tuned peer claims (pgqrs uses 100),
#: not pgqueue's own default, so the ceiling is the database's and not pgqueue's choice.
BATCH = 100
CHANNEL = "raw_jobs"

SCHEMA = """
CREATE TABLE jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload jsonb NOT NULL,
    locked_until timestamptz
);
CREATE INDEX jobs_ready ON jobs (id) WHERE locked_until IS NULL;
"""

# $n placeholders (asyncpg); raw_psycopg rewrites them to %s.
INSERT_MANY = """
WITH ins AS (INSERT INTO jobs (payload) SELECT unnest($1::text[])::jsonb RETURNING 1)
SELECT pg_notify('raw_jobs', '') FROM (SELECT 1 FROM ins LIMIT 1) AS one
"""
INSERT_ONE = """
WITH ins AS (INSERT INTO jobs (payload) VALUES ($1::text::jsonb) RETURNING 1)
SELECT pg_notify('raw_jobs', '') FROM ins
"""
CLAIM = """
UPDATE jobs SET locked_until = now() + interval '30 seconds'
WHERE id IN (
    SELECT id FROM jobs WHERE locked_until IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, payload
"""
DELETE = "DELETE FROM jobs WHERE id = ANY($1::bigint[])"
#: Before a draining worker gives up on an empty claim.
ANY_READY = "SELECT EXISTS (SELECT FROM jobs WHERE locked_until IS NULL)"


def psycopg_sql(statement: str) -> str:
    """The same statement with psycopg's placeholders."""
    return statement.replace("$1", "%s")


def encode(p: Any) -> str:
    """A payload as compact JSON, as the hand-written loops (and PgQueuer) send it."""
    return json.dumps(p, separators=(",", ":"))


@dataclass(frozen=True)
class Ops(Generic[Row]):
    """The statements of :func:`claim_loop`, on one driver's connection."""

    claim: Callable[[], Awaitable[Sequence[Row]]]  # CLAIM, BATCH jobs
    delete: Callable[[Sequence[Row]], Awaitable[object]]  # DELETE those rows
    any_ready: Callable[[], Awaitable[object]]  # ANY_READY, truthy if so


async def claim_loop(
    probe: Probe,
    pickup: bool,
    drain: bool,
    wake: asyncio.Event,
    handle: Callable[[Row], Awaitable[None]],
    ops: Ops[Row],
) -> None:
    """The raw async worker, until the probe fires: claim a batch, run its handlers
    concurrently, delete it in one statement. After an empty claim a drain looks again
    if jobs are left (an empty claim with jobs left was seen once after a churn), else
    ends; an idle worker waits for ``wake`` (set on NOTIFY), at most a second."""
    await start_probe(probe, pickup)
    while not probe.done:
        wake.clear()
        rows = await ops.claim()
        if rows:
            await asyncio.gather(*(handle(r) for r in rows))
            await ops.delete(rows)
        elif drain:
            if await ops.any_ready():
                continue
            break
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)
