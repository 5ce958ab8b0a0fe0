"""Typed payloads without a database: what a handler's ``Message[T]`` makes of a
payload (pydantic v2 model, dataclass, TypedDict; with pydantic and without), and
models and dataclasses encoded as JSON on the way in. The annotations here are strings
(``from __future__ import annotations``), as in most applications: they are resolved."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

# The pydantic extra (in dev); CI's floors run installs only the core's floors: skipped.
pytest.importorskip("pydantic")

import pydantic
from typing_extensions import NotRequired, TypedDict, assert_type

from pgqueue import InvalidPayload, Message
from pgqueue._payloads import parser_for, payload_type
from pgqueue._validate import json_text
from pgqueue.testing import make_message


class SendEmail(pydantic.BaseModel):
    to: str
    at: datetime
    cc: list[str] = []


@dataclass
class Resize:
    image: str
    width: int = 100


class Ping(TypedDict):
    host: str
    port: NotRequired[int]


def send(job: Message[SendEmail]) -> str:
    assert_type(job.payload, SendEmail)  # mypy --strict sees the model, not Any
    return job.payload.to


def resize(job: Message[Resize]) -> int:
    return job.payload.width


def ping(job: Message[Ping]) -> str:
    return job.payload["host"]


def untyped(job: Message) -> Any:
    return job.payload


def mapping(job: Message[dict[str, int]]) -> Any:
    return job.payload


AT = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)


def test_a_typed_handler_is_called_with_the_model_in_a_unit_test() -> None:
    assert send(make_message(SendEmail(to="a@example.org", at=AT))) == "a@example.org"


def test_the_payload_type_comes_from_the_first_parameter() -> None:
    assert payload_type(send) is SendEmail
    assert payload_type(resize) is Resize
    assert payload_type(untyped) is None
    assert parser_for(untyped) is None
    assert parser_for(mapping) is None  # only models, dataclasses and TypedDicts
    assert parser_for(lambda job: None) is None


def test_a_pydantic_model_is_validated_and_parsed() -> None:
    parse = parser_for(send)
    assert parse is not None
    m = parse({"to": "a@example.org", "at": "2026-12-03T09:00:00Z"})
    assert m == SendEmail(to="a@example.org", at=AT)
    with pytest.raises(InvalidPayload, match=r"(?s)not a valid SendEmail: .*\bat\b"):
        parse({"to": "a@example.org"})
    with pytest.raises(InvalidPayload, match="not a valid SendEmail"):
        parse(["not", "an", "object"])


@pytest.mark.parametrize("with_pydantic", [True, False])
def test_dataclasses_and_typeddicts(with_pydantic: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not with_pydantic:
        monkeypatch.setitem(sys.modules, "pydantic", None)  # import pydantic fails
    parse_resize = parser_for(resize)
    parse_ping = parser_for(ping)
    assert parse_resize is not None and parse_ping is not None
    assert parse_resize({"image": "a.png"}) == Resize("a.png")
    assert parse_ping({"host": "db"}) == {"host": "db"}
    # unknown keys are dropped (pydantic's default), with pydantic or without
    assert parse_resize({"image": "a.png", "height": 3}) == Resize("a.png")
    assert parse_ping({"host": "db", "port": 5, "x": 1}) == {"host": "db", "port": 5}
    bad: object
    for bad in ({"width": 3}, "a.png"):
        with pytest.raises(InvalidPayload, match="not a valid Resize"):
            parse_resize(bad)
    for bad in ({"port": 1}, [1]):
        with pytest.raises(InvalidPayload, match="not a valid Ping"):
            parse_ping(bad)
    if with_pydantic:  # field types are checked too
        with pytest.raises(InvalidPayload, match="not a valid Resize"):
            parse_resize({"image": "a.png", "width": "wide"})


def test_models_and_dataclasses_are_sent_as_their_json() -> None:
    assert json_text(SendEmail(to="a", at=AT), "payload") == (
        '{"to":"a","at":"2026-12-03T09:00:00Z","cc":[]}'
    )
    assert json_text({"job": Resize("b.png", 3)}, "payload") == (
        '{"job":{"image":"b.png","width":3}}'
    )
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        json_text(Resize(image=object(), width=1), "payload")  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        json_text(Resize, "payload")  # a class, not an instance


@pytest.mark.slow
def test_typed_handler_code_has_no_any() -> None:
    """``mypy --strict --disallow-any-expr`` over an application with typed handlers
    (tests/support/typed_app.py) reports no expression typed ``Any`` inside a handler
    whose job is a ``Message[Model]``: ``job.payload.to`` is a ``str``. (The decorator
    expressions themselves carry the handler's ``Callable[..., Any]`` bound: not handler
    code.)"""
    pytest.importorskip("mypy")  # a dev tool: not in CI's floors venv
    app = Path(__file__).resolve().parents[1] / "support" / "typed_app.py"
    tree = ast.parse(app.read_text())
    bodies = [
        range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.args.args
        and ast.unparse(node.args.args[0].annotation or ast.Constant(None)).startswith("Message[")
    ]
    assert len(bodies) == 3
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--disallow-any-expr",
            "--follow-imports=silent",
            "--no-incremental",
            str(app),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors, done.stdout + done.stderr  # mypy ran (the decorators are reported)
    in_handlers = [e for e in errors if any(int(e.split(":")[1]) in b for b in bodies)]
    assert in_handlers == [], "\n".join(in_handlers)
