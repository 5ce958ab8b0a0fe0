"""``pgqueue._rows``' fast constructors: what they build must be indistinguishable from
the dataclass's own ``__init__`` (the database-backed twin of this test is in
tests/behaviour/test_producer_async.py)."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timezone
from typing import Any

import pytest

from pgqueue import _rows
from pgqueue.types import JobInfo, Message

NOW = datetime.now(timezone.utc)


def test_every_field_is_set_and_the_object_is_the_frozen_class_itself() -> None:
    values: Any = (7, "q", {"a": [1]}, "ep", -2, "running", 1, 3, NOW, NOW, "k", {"h": 1})
    values += (None, "w", "boom", [{"attempt": 1}], 12, True, NOW)
    built = _rows._message(*values)
    assert type(built) is Message and built == Message(*values)
    assert dataclasses.astuple(built) == values
    assert hash(pickle.loads(pickle.dumps(built)).id) == hash(7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.payload = {}  # type: ignore[misc]
    for made in (built, Message(*values)):  # no attribute beyond the slots, either way
        with pytest.raises((AttributeError, TypeError)):
            made.other = 1  # type: ignore[attr-defined]


def test_job_info_is_built_the_same_way() -> None:
    names = [f.name for f in dataclasses.fields(JobInfo)]
    values: Any = tuple(range(len(names)))
    built = _rows._job_info(*values)
    assert type(built) is JobInfo and built == JobInfo(*values)


def test_a_class_whose_instances_cannot_change_class_gets_no_twin() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    assert _rows._twin(NoSlots) is None
    with pytest.raises(TypeError, match="slots=True"):
        _rows._builder(NoSlots)


def test_without_a_twin_each_slot_is_set_through_its_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_rows, "_twin", lambda cls: None)
    build = _rows._builder(Message)
    assert "_twin" not in build.__code__.co_names  # the descriptors' way
    values: Any = (7, "q", {"a": 1}, "ep", 0, "queued", 0, None, NOW, NOW, None, None)
    values += (None, None, None, None, None, False, None)
    built = build(*values)
    assert type(built) is Message and built == Message(*values)


def test_claimed_rows_decode_their_json_together() -> None:
    # A keyed claim's row: LEASED_COLUMNS (JSON as text), then the key and its weight.
    retried: Any = (5, "q", '{"n": 5}', "ep", 0, "running", 2, 3, NOW, NOW, None, None)
    retried += ("lease", "w", "boom", '[{"attempt": 1, "error": "boom"}]', None, "k", 1)
    first: Any = (6, "q", '"plain"', "ep", 0, "running", 1, 3, NOW, NOW, None)
    first += ('{"traceparent": "00-ab"}', "lease", "w", None, None, None, None, 1)
    a, b = _rows.claimed([retried, first])
    assert (a.id, a.payload, a.headers) == (5, {"n": 5}, None)
    assert a.errors == [{"attempt": 1, "error": "boom"}] and not a.redelivered
    assert (b.id, b.payload, b.headers, b.errors) == (6, "plain", {"traceparent": "00-ab"}, None)
    assert _rows.claimed([]) == []
