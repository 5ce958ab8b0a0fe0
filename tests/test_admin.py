# DO NOT EDIT: generated from test_admin_async.py by tools/async_to_sync.py
"""Admin behaviour, for every bind kind and driver (sync twin generated)."""

from __future__ import annotations

import pytest

from pgqueue import SyncAdmin, QueueAlreadyExists

from .conftest import SyncDB


def test_create_queue_twice(sync_db: SyncDB) -> None:
    admin = SyncAdmin(sync_db.engine, schema=sync_db.schema)
    q = admin.create_queue("tasks", **sync_db.kw)
    with pytest.raises(QueueAlreadyExists):
        admin.create_queue("tasks", **sync_db.kw)
    again = admin.create_queue("tasks", exists_ok=True, **sync_db.kw)
    assert again == q
