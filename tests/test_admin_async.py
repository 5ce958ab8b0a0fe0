"""Admin behaviour, for every bind kind and driver (sync twin generated)."""

from __future__ import annotations

import pytest

from pgqueue import AsyncAdmin, QueueAlreadyExists

from .conftest import AsyncDB


async def test_create_queue_twice(async_db: AsyncDB) -> None:
    admin = AsyncAdmin(async_db.engine, schema=async_db.schema)
    q = await admin.create_queue("tasks", **async_db.kw)
    with pytest.raises(QueueAlreadyExists):
        await admin.create_queue("tasks", **async_db.kw)
    again = await admin.create_queue("tasks", exists_ok=True, **async_db.kw)
    assert again == q
