"""The docs site's API reference documents every name pgqueue exports."""

from __future__ import annotations

import re
from pathlib import Path

import pgqueue

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_is_in_the_api_reference() -> None:
    text = (ROOT / "docs/reference.md").read_text()
    documented = set(re.findall(r"^::: pgqueue\.(\w+)", text, re.M))
    errors = re.search(r"^::: pgqueue\.errors\n((?:    .*\n)+)", text, re.M)
    assert errors is not None
    documented |= set(re.findall(r"^        - (\w+)$", errors.group(1), re.M))  # its members
    missing = {n for n in pgqueue.__all__ if n != "metadata"} - documented
    assert not missing, f"add to docs/reference.md: {sorted(missing)}"


def test_every_admin_method_is_in_the_api_reference() -> None:
    """AsyncAdmin composes its verbs from one module per area, and its reference page
    lists them by hand (in reading order, not by source line across those modules): a
    verb added to any of them must be added to that list too."""
    text = (ROOT / "docs/reference.md").read_text()
    block = re.search(r"^::: pgqueue\.AsyncAdmin\n((?:    .*\n)+)", text, re.M)
    assert block is not None
    listed = re.findall(r"^        - (\w+)$", block.group(1), re.M)
    public = {n for n in dir(pgqueue.AsyncAdmin) if not n.startswith("_")}
    assert sorted(listed) == sorted(public), "docs/reference.md: AsyncAdmin's members list"
    assert len(listed) == len(set(listed))
