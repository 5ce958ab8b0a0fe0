"""The unit tier: pgqueue's pure code, with no database at all.

Every database fixture of the other tiers starts from ``pg_url`` (tests/conftest.py);
here it fails the test instead, so a unit test that asks for a database, directly or
through another fixture, fails at once rather than starting an embedded PostgreSQL
or connecting to ``PGQUEUE_TEST_DSN``. The tier must pass with no server running.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pg_url() -> None:
    pytest.fail("tests/unit must not use a database: move this test to tests/behaviour")
