"""A griffe extension for the API reference (mkdocs.yml): pgqueue's docstrings are
written for ``help()`` and doctest, in reStructuredText habits; rendered as Markdown,
``>>>`` lines would read as block quotes and ``:meth:`x``` as text. This turns each
doctest block into a fenced ``pycon`` block (without its ``# doctest:`` directives),
Sphinx roles into code, and a paragraph's closing ``::`` into ``:``. The docstrings
themselves stay as they are."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:meth|class|func|attr|exc|mod|data|obj):`~?([^`]+)`")
_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def _role(match: re.Match[str]) -> str:
    return f"`{match[1]}`"


def markdown(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(_DIRECTIVE.sub("", lines[i][len(indent) :]))
                i += 1
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
            continue
        line = _ROLE.sub(_role, line)
        if line.endswith("::") and not line.endswith(":::"):
            line = line[:-1]
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
