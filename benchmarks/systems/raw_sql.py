"""The minimal job queue the raw-driver ceilings run: one table, four statements.

No queue column, priorities, attempts, lease tokens, heartbeats or archive: the least
SQL that still gives at-least-once hand-out to many workers (SKIP LOCKED) and an idle
wake-up (NOTIFY in the insert statement, as pgqueue does).
"""

from __future__ import annotations

#: Jobs a raw worker claims per round trip: pgqueue's default batch (= concurrency).
BATCH = 8
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
