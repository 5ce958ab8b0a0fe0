"""A job's options and a batch of jobs, validated and laid out for the inserts: the one
place the options of ``JobSpec`` (``JOB_OPTIONS``) are checked and converted, for
enqueue, workflows and cron alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._validate import (
    _ENCODE,
    MAX_KEY_CHARS,
    MAX_PRIORITY,
    Encode,
    _utf8,
    json_text,
    positive_int,
    run_at,
    seconds,
)
from .errors import InvalidArgument, InvalidDelay, InvalidPayload
from .types import JOB_OPTIONS, JobSpec

#: One job's validated options, in ``JOB_OPTIONS`` order (``delay`` in seconds, headers
#: as JSON text).
Options = tuple[Any, ...]
_DEDUPE_KEY = JOB_OPTIONS.index("dedupe_key")
#: Longest JSON array of a plain batch's payloads sent as one jsonb value.
_DOCUMENT_MAX_CHARS = 2**25


def job_options(queue: str, where: str, spec: JobSpec | None, defaults: JobSpec) -> Options:
    """One job's options (its own, else the call's ``defaults``), validated."""

    def pick(name: str) -> Any:
        own = None if spec is None else getattr(spec, name)
        return own if own is not None else getattr(defaults, name)

    priority = pick("priority")
    priority = 0 if priority is None else priority
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"{where}: priority must be an int, not {priority!r}")
    if not -MAX_PRIORITY - 1 <= priority <= MAX_PRIORITY:
        raise InvalidArgument(f"{where}: priority must be within -32768..32767")
    delay, when = pick("delay"), pick("run_at")
    if spec is not None and spec.delay is not None and spec.run_at is None:
        when = None  # a job's own delay overrides a batch-wide run_at
    if spec is not None and spec.run_at is not None and spec.delay is None:
        delay = None
    if delay is not None and when is not None:
        raise InvalidDelay(f"{where}: give delay or run_at, not both")
    dedupe_key = pick("dedupe_key")
    if dedupe_key is not None:
        # Bytes, not characters: the unique index's rows are limited to ~2.7 kB.
        if not isinstance(dedupe_key, str) or not dedupe_key or len(dedupe_key) > 1024:
            raise InvalidArgument(f"{where}: dedupe_key must be a non-empty str of <= 1024 bytes")
        _utf8(dedupe_key, f"{where}: dedupe_key")
        if len(dedupe_key.encode()) > 1024:
            raise InvalidArgument(f"{where}: dedupe_key must be a non-empty str of <= 1024 bytes")
    entrypoint = pick("entrypoint")
    entrypoint = queue if entrypoint is None else entrypoint
    if (
        not isinstance(entrypoint, str)
        or not entrypoint
        or len(entrypoint) > 255
        or "\x00" in entrypoint
    ):
        raise InvalidArgument(f"{where}: entrypoint must be a str of 1 to 255 characters")
    _utf8(entrypoint, f"{where}: entrypoint")
    max_attempts = pick("max_attempts")
    if max_attempts is not None:
        positive_int(max_attempts, f"{where}: max_attempts", maximum=1_000_000)
    key = pick("key")
    if key is not None:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise InvalidArgument(
                f"{where}: key must be a str of 1 to {MAX_KEY_CHARS} characters, got {key!r:.80}"
            )
        _utf8(key, f"{where}: key")
    weight = pick("weight")
    if weight is not None:
        positive_int(weight, f"{where}: weight", maximum=1_000_000)
    headers = pick("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise InvalidPayload(f"{where}: headers must be a mapping, not {type(headers)}")
    values = {
        "priority": priority,
        "delay": seconds(delay, f"{where}: delay") or 0.0,
        "run_at": run_at(when),
        "dedupe_key": dedupe_key,
        "headers": None if headers is None else json_text(dict(headers), "headers"),
        "entrypoint": entrypoint,
        "max_attempts": max_attempts,
        "key": key,
        "weight": weight,
    }
    return tuple(values[name] for name in JOB_OPTIONS)


@dataclass(frozen=True, slots=True)
class Jobs:
    """A validated batch, laid out for the inserts.

    ``arrays`` holds each option as a parallel array (``b_<option>``, what
    ``INSERT_JOBS`` unnests). The payloads are JSON: one text per job (``texts``), or,
    for a plain batch (two or more jobs sharing their options, with no dedupe_key:
    ``INSERT_UNIFORM_JOBS``), one JSON array of them all (``document``), encoded in one
    call instead of one per job."""

    arrays: dict[str, list[Any]]
    texts: list[str]
    document: str | None = None

    @property
    def size(self) -> int:
        return len(self.arrays["b_entrypoint"])

    @property
    def deduplicated(self) -> bool:
        """Whether any job has a dedupe_key (so a duplicate can fail the batch)."""
        return any(k is not None for k in self.arrays["b_dedupe_key"])


def _arrays(columns: Sequence[list[Any]]) -> dict[str, list[Any]]:
    return {f"b_{name}": column for name, column in zip(JOB_OPTIONS, columns, strict=True)}


def validate_jobs(
    queue: str, items: Sequence[Any], defaults: JobSpec, encode: Encode = _ENCODE
) -> Jobs:
    """Validate jobs and lay them out as :class:`Jobs`.

    A plain payload takes the call's options, validated once per call: per job only
    the payload is encoded (the hot path of a large batch); a batch of plain payloads
    only, with no dedupe_key, is encoded in one call."""
    if len(items) > 1 and not any(isinstance(item, JobSpec) for item in items):
        shared = job_options(queue, "job 0", None, defaults)
        if shared[_DEDUPE_KEY] is None:
            try:
                document = json_text(list(items), "payloads", encode)
            except InvalidPayload:
                document = None  # encode each below: the error names the job
            # PostgreSQL caps one jsonb array at 256 MB (a text[] at 1 GB): a huge
            # batch goes as one text per job (a character is at most 4 bytes).
            if document is not None and len(document) <= _DOCUMENT_MAX_CHARS:
                return Jobs(_arrays([[value] * len(items) for value in shared]), [], document)
    payloads: list[str] = []
    options: list[Options] = []
    shared_options: Options | None = None
    for i, item in enumerate(items):
        if isinstance(item, JobSpec):
            options.append(job_options(queue, f"job {i}", item, defaults))
            payload = item.payload
        else:
            if shared_options is None:
                shared_options = job_options(queue, f"job {i}", None, defaults)
            options.append(shared_options)
            payload = item
        payloads.append(json_text(payload, f"job {i}: payload", encode))
    columns = [list(c) for c in zip(*options, strict=True)] or [[] for _ in JOB_OPTIONS]
    return Jobs(_arrays(columns), payloads)
