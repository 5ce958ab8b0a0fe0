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

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slots:
        a: int
        b: int

    assert _rows._twin(NoSlots) is None
    twin = _rows._twin(Slots)
    assert twin is not None and twin.__slots__ == ("a", "b")
    # The descriptors' way, which a layout the twin cannot share falls back to.
    build = _rows._builder(Slots)
    assert build(1, 2) == Slots(1, 2) and type(build(1, 2)) is Slots
