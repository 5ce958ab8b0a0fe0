"""The compiled-SQL snapshot is current: a change to SQL is reviewed as SQL."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_statements_snapshot_is_current() -> None:
    spec = importlib.util.spec_from_file_location("snapshot_sql", ROOT / "tools/snapshot_sql.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    current = (ROOT / "tests/snapshots/statements.sql").read_text()
    assert tool.render() == current, "stale: run python tools/snapshot_sql.py and review it"
