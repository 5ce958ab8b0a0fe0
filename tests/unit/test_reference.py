"""The docs site's API reference documents every name pgqueue exports."""

from __future__ import annotations

import re
from pathlib import Path

import pgqueue

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_is_in_the_api_reference() -> None:
    text = (ROOT / "docs/reference.md").read_text()
    documented = set(re.findall(r"^::: pgqueue\.(\w+)", text, re.M))
    documented |= set(re.findall(r"^        - (\w+)$", text, re.M))  # errors listed as members
    missing = {n for n in pgqueue.__all__ if n != "metadata"} - documented
    assert not missing, f"add to docs/reference.md: {sorted(missing)}"
