"""An async listener's ``close()`` ends its task even when a cancellation is lost.

Before Python 3.12, ``asyncio.wait_for`` returns the result of an operation that
completes in the same loop iteration as its task is cancelled, and the cancellation is
gone (CPython gh-86296). The listener's health check (``wait_for(SELECT 1)``) answering
just as the worker's wind-down cancelled it kept the listener running, and ``close()``
waiting for it forever: ``worker.run`` never returned, the loop idle between health
checks (``test_healthz_turns_503_when_the_run_loop_is_stuck`` hung on it twice).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.engine import URL

from pgqueue._listen.aio import Listener
from tests.support.db import make_async_engine

pytestmark = pytest.mark.timeout(120)


class LosesOneCancellation(Listener):
    """What the health check's ``wait_for`` did when its answer came as the task was
    cancelled: the cancellation is swallowed, and the listener goes on."""

    lost = 0

    async def _serve(self, conn: Any) -> None:
        if not self.lost:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.lost += 1
        await super()._serve(conn)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_close_ends_a_listener_whose_cancellation_was_lost(clean: URL, driver: str) -> None:
    async def main() -> None:
        engine = make_async_engine(clean, driver)
        listener = LosesOneCancellation(engine, ["pgqueue_test_listener_close"])
        assert await listener.start()
        # Bounded to turn a hang into a failure: before the fix, close() never returned.
        # (Not wait_for: cancelling close() at the bound would cancel the task again.)
        closing = asyncio.ensure_future(listener.close())
        await asyncio.wait({closing}, timeout=20)
        assert closing.done(), "close() did not return"
        assert listener.lost == 1
        assert listener._conn is None  # its connection closed
        await engine.dispose()

    asyncio.run(main())
