#!/usr/bin/env python3
"""Print pgqueue's declared minimum versions as pinned requirements.

    python tools/floors.py          # SQLAlchemy[asyncio]==2.0.33, alembic==1.16, ...

CI installs these into a virtual environment of the oldest supported Python and runs
the unit and behaviour tiers there ("floors" in .ci/run): whatever ``pyproject.toml``
allows, CI tests. The floors are the ``>=`` bounds of the dependencies and of the
``psycopg`` and ``asyncpg`` extras; the test tools come unpinned.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The extras whose floors are tested with the core ones (the drivers).
EXTRAS = ("psycopg", "asyncpg")
#: What the test suite itself needs, at any version.
# (The dashboard's behaviour tests need Starlette, which fastapi brings, Jinja2,
# python-multipart and httpx for Starlette's test client.)
TEST_TOOLS = (
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "hypothesis",
    "fastapi",
    "uvicorn",
    "jinja2",
    "python-multipart",
    "httpx",
)


def _array(text: str, key: str) -> list[str]:
    """The string array ``key = [...]`` of pyproject.toml (tomllib is Python 3.11+, and
    this runs on the oldest supported Python too)."""
    array = r'(\[(?:"[^"]*"|[^\[\]"])*\])'  # strings may hold brackets: extras
    match = re.search(rf"^{re.escape(key)} = {array}", text, flags=re.M)
    if match is None:
        raise SystemExit(f"pyproject.toml has no {key} = [...]")
    value = ast.literal_eval(match[1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def floors(text: str) -> list[str]:
    """Every floor of pyproject.toml's dependencies and driver extras, pinned."""
    wanted = _array(text, "dependencies")
    for extra in EXTRAS:
        wanted += _array(text, extra)
    pinned = []
    for requirement in wanted:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+(?:\[[^\]]+\])?)>=([0-9][^,;\s]*)", requirement)
        if match is None:
            raise SystemExit(f"{requirement!r} has no single >= floor to pin")
        pinned.append(f"{match[1]}=={match[2]}")
    return pinned


def main() -> int:
    print("\n".join([*floors((ROOT / "pyproject.toml").read_text()), *TEST_TOOLS]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
