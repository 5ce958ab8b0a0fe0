"""Job control's arguments, validated: the filters of ``list_jobs`` and the bulk verbs
(cancel, retry, delete), lists of job ids, a new priority."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._sql import jobs as jobs_sql
from ._validate import MAX_PRIORITY, _utf8, check_queue_name, job_id, json_text
from .errors import InvalidArgument, InvalidPayload

#: Most jobs one ``list_jobs`` call returns.
MAX_LIST = 1_000


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Validated ``list_jobs`` filters (also the bulk verbs' ``where``): ``None``
    means not filtered; ``statuses`` is never empty."""

    queue: str | None
    statuses: tuple[str, ...]
    entrypoint: str | None
    dedupe_key: str | None
    headers: dict[str, Any] | None  # what the job's headers must contain

    def shape(self, *, after: bool, ids_only: bool = False) -> jobs_sql.Shape:
        return jobs_sql.Shape(
            queue=self.queue is not None,
            statuses=self.statuses,
            entrypoint=self.entrypoint is not None,
            dedupe_key=self.dedupe_key is not None,
            headers=self.headers is not None,
            after=after,
            ids_only=ids_only,
        )

    def params(self) -> dict[str, Any]:
        return {
            "b_queue": self.queue,
            "b_entrypoint": self.entrypoint,
            "b_dedupe_key": self.dedupe_key,
            "b_headers": self.headers,
        }


def statuses(value: object, allowed: Sequence[str], what: str = "status") -> tuple[str, ...]:
    """One status or several, each among ``allowed``, in ``allowed``'s order; ``None``:
    every allowed one."""
    if value is None:
        return tuple(allowed)
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, Iterable) or isinstance(given, bytes | Mapping):
        raise InvalidArgument(f"{what} must be a status or a list of statuses, not {value!r}")
    wanted = list(given)
    unknown = [s for s in wanted if not isinstance(s, str) or s not in allowed]
    if unknown or not wanted:
        raise InvalidArgument(
            f"{what} must be among {', '.join(allowed)}, got {value!r}"
            + ("" if wanted else " (an empty list matches nothing)")
        )
    return tuple(s for s in allowed if s in wanted)


def job_filter(
    *,
    queue: object,
    status: object,
    entrypoint: object,
    dedupe_key: object,
    headers: object,
    allowed: Sequence[str] = jobs_sql.STATUSES,
) -> JobFilter:
    """``list_jobs``'s filters, checked; ``allowed``: the statuses a verb acts on."""
    for name, text in (("entrypoint", entrypoint), ("dedupe_key", dedupe_key)):
        if text is not None:
            if not isinstance(text, str) or not text:
                raise InvalidArgument(f"{name} must be a non-empty str, not {text!r}")
            _utf8(text, name)
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise InvalidPayload(f"headers must be a mapping, not {type(headers).__name__}")
        headers = dict(headers)
        json_text(headers, "headers")  # what the jsonb parameter will have to encode
    return JobFilter(
        queue=None if queue is None else check_queue_name(queue),
        statuses=statuses(status, allowed),
        entrypoint=entrypoint,  # type: ignore[arg-type]  # checked above
        dedupe_key=dedupe_key,  # type: ignore[arg-type]
        headers=headers,  # checked above
    )


def job_ids(values: object) -> list[int]:
    """Job ids (a list, tuple or set of positive ints), each once, in order."""
    if isinstance(values, int) and not isinstance(values, bool):
        raise InvalidArgument(
            f"expected a list of job ids, got the single id {values!r}: [{values}]"
        )
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidArgument(f"expected a list of job ids, not {type(values).__name__}")
    return list(dict.fromkeys(job_id(v) for v in values))


def priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"priority must be an int, not {value!r}")
    if not -MAX_PRIORITY - 1 <= value <= MAX_PRIORITY:
        raise InvalidArgument(f"priority must be within -32768..32767, got {value}")
    return value
