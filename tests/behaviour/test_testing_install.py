"""The plugin's housekeeping (``pgqueue._fixtures.install``) on both of its paths: with
psycopg (sync), and with asyncpg alone (an async-only application installs no psycopg)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from pgqueue import SyncAdmin, SyncProducer, _fixtures
from tests.support.db import make_sync_engine


@pytest.mark.parametrize("psycopg", [True, False], ids=["psycopg", "asyncpg-alone"])
def test_install_then_empty_before_each_test(
    installed: URL, psycopg: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = "pgq_plugin_install"
    monkeypatch.setattr(_fixtures, "_has_psycopg", lambda: psycopg)
    engine = make_sync_engine(installed)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        empty = _fixtures.install(installed, schema)
        admin = SyncAdmin(engine, schema=schema)
        admin.create_queue("q")
        producer = SyncProducer(engine, "q", schema=schema)
        producer.batch_enqueue([1, 2, 3])
        empty()
        assert admin.list_queues() == []
        admin.create_queue("q")
        assert producer.enqueue(4).id == 1  # identities restarted
        # installing again (the next run) keeps what is there and empties the same way
        _fixtures.install(installed, schema)()
        assert admin.list_queues() == []
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()
