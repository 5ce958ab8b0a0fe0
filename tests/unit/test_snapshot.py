"""The compiled-SQL snapshot is current: a change to SQL is reviewed as SQL."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_statements_snapshot_is_current() -> None:
    import pytest
    import sqlalchemy

    if not sqlalchemy.__version__.startswith("2.1."):
        # Written with the SQLAlchemy the project develops on (2.1); 2.0 renders the same
        # statements with other parentheses. The floors stage runs the statements.
        pytest.skip(f"the snapshot is SQLAlchemy 2.1's rendering, not {sqlalchemy.__version__}'s")
    spec = importlib.util.spec_from_file_location("snapshot_sql", ROOT / "tools/snapshot_sql.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    current = (ROOT / "tests/snapshots/statements.sql").read_text()
    assert tool.render() == current, "stale: run python tools/snapshot_sql.py and review it"


#: Call syntax that is not a function looked up on the search path: SQL constructs
#: (``= ANY(...)``, ``ARRAY(subquery)``, ``COALESCE``, ``GREATEST``, ``LEAST``,
#: ``CAST``, ``EXTRACT``), column
#: lists of derived tables (``AS m(...)``), and the literals of ``VALUES``.
_NOT_FUNCTIONS = {
    *("any", "array", "coalesce", "greatest", "least", "values", "in", "exists"),
    *("cast", "extract"),
}


def test_every_function_pgqueue_calls_is_schema_qualified() -> None:
    """A function name resolved through the search path can be taken over: a role with
    CREATE on a schema before pg_catalog's exact match (``public.power(float8,
    integer)`` beat ``pg_catalog.power(float8, float8)`` for an integer argument)
    plants one, and every worker runs it with its own privileges. So every call in
    every statement is ``pg_catalog.name(...)``."""
    import re

    sql = (ROOT / "tests/snapshots/statements.sql").read_text()
    calls = re.findall(r"(?<![\w.$\"])([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?)\(", sql)
    unqualified = {
        name
        for name in calls
        if "." not in name
        and name.lower() not in _NOT_FUNCTIONS
        and not re.search(rf"\bAS {re.escape(name)}\(", sql)  # a derived table's columns
        and not re.search(rf"\b{re.escape(name)}\(\w+(, \w+)*\) AS\b", sql)
    }
    assert unqualified == set(), f"unqualified function calls: {sorted(unqualified)}"
    assert "pg_catalog.now(" in sql and "pg_catalog.unnest(" in sql


def test_the_dashboards_sql_is_schema_qualified_too() -> None:
    """The dashboard's own reads (``pgqueue.web``) run as a role that can see everything:
    the same rule, checked on its source (``func.`` calls) and its raw SQL texts."""
    import re

    from sqlalchemy.sql.elements import TextClause

    web = ROOT / "pgqueue" / "web"
    for path in sorted(web.glob("*.py")):
        source = path.read_text()
        loose = re.findall(r"\bfunc\.(?!pg_catalog\.)(\w+)\(", source)
        assert set(loose) <= {"any", "coalesce", "distinct"}, (path.name, sorted(set(loose)))
    pytest = __import__("pytest")
    modules = [
        pytest.importorskip(f"pgqueue.web.{name}")
        for name in ("_queries", "_queries_system", "_queries_workflows", "_app")
    ]
    texts = [v.text for m in modules for v in vars(m).values() if isinstance(v, TextClause)]
    assert texts
    for sql in texts:
        calls = re.findall(r"(?<![\w.$\"])([A-Za-z_]\w*)\(", sql)
        bare = {c for c in calls if c.lower() not in _NOT_FUNCTIONS}
        assert bare == set(), (sql[:80], sorted(bare))
