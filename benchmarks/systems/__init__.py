"""The systems under test, by name. Modules are imported lazily: a child process
loads only the library it measures."""

from __future__ import annotations

import importlib

from .base import System

#: name -> "module:Class", in table order.
REGISTRY = {
    "pgqueue-asyncpg": "pgqueue_async:PgqueueAsyncpg",
    "pgqueue-asyncpg-tuned": "pgqueue_async:PgqueueAsyncpgTuned",
    "pgqueue-psycopg-async": "pgqueue_async:PgqueuePsycopgAsync",
    "pgqueue-sync": "pgqueue_sync:PgqueueSync",
    "pgqueuer": "pgqueuer_:Pgqueuer",
    "procrastinate": "procrastinate_:Procrastinate",
    "pgqrs": "pgqrs_:Pgqrs",
    "raw-asyncpg": "raw_asyncpg:RawAsyncpg",
    "raw-psycopg-async": "raw_psycopg:RawPsycopgAsync",
    "raw-psycopg": "raw_psycopg:RawPsycopg",
}

#: Systems that run the long workloads (W5 deep backlog, W6 churn) by default: one
#: per library (the table is what matters there, not the driver).
DEEP = ("pgqueue-asyncpg", "pgqueuer", "procrastinate", "pgqrs", "raw-asyncpg")


def load(name: str) -> type[System]:
    module, cls = REGISTRY[name].split(":")
    found: type[System] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return found
