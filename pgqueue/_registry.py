"""What a worker is told to run: entrypoints with their limits, and cron schedules.

Checked when registered (``@worker.entrypoint``, ``@worker.schedule``), before a worker
runs: a bad limit, a cron expression that never fires or a schedule for a queue the
worker does not serve is an ``InvalidArgument`` at import time, not a dead schedule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from . import _validate
from ._cron import Cron, with_zone
from ._payloads import Parse, parser_for
from .errors import InvalidArgument
from .types import JSON, Message

#: ``retry(job, error)``: seconds until the next attempt (None: the queue's backoff).
RetryPolicy = Callable[[Message, BaseException], float | None]


@dataclass(frozen=True, slots=True)
class Entrypoint:
    """A registered handler and its limits."""

    name: str
    handler: Callable[..., Any]
    concurrency_limit: int | None
    rate_limit: float | None
    max_attempts: int | None
    timeout: float | None
    retry_delay: RetryPolicy | None
    #: The limits hold per job key, not for the entrypoint as a whole.
    per_key: bool = False
    #: One job at a time per key, in enqueue order (docs/flow-control.md).
    ordered: bool = False
    #: Ordered keys: whether a dead job holds the rest of its key ("hold") or not ("skip").
    on_dead: str = "hold"
    #: Validates a job's payload as the handler's ``Message[T]`` asks (None: as it is).
    parse: Parse | None = None
    #: The handler is an ``async def`` one (asked once, here: ``inspect`` per job was
    #: 2% of a worker's time on 20,000 no-op jobs).
    coroutine: bool = False

    @property
    def limited(self) -> bool:
        return self.concurrency_limit is not None or self.rate_limit is not None or self.ordered

    @property
    def keyed(self) -> bool:
        """Limited per key (``_plans.worker.keyed_dequeue``)."""
        return self.per_key or self.ordered


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule that enqueues one job per tick."""

    name: str
    cron: Cron
    queue: str
    entrypoint: str
    payload: JSON
    catch_up: int


def entrypoint_options(
    *,
    concurrency_limit: int | None,
    rate_limit: float | None,
    max_attempts: int | None,
    timeout: float | timedelta | None,
    retry: RetryPolicy | None,
    per_key: bool = False,
    ordered: bool = False,
    on_dead: str = "hold",
) -> dict[str, Any]:
    """An entrypoint's options, checked and normalised (the fields of
    :class:`Entrypoint` after ``name`` and ``handler``)."""
    if concurrency_limit is not None:
        _validate.positive_int(concurrency_limit, "concurrency_limit", maximum=1_000_000)
    if rate_limit is not None and (
        isinstance(rate_limit, bool)
        or not isinstance(rate_limit, int | float)
        or not 0 < rate_limit <= 1_000_000
    ):
        raise InvalidArgument(f"rate_limit must be jobs per second > 0, got {rate_limit!r}")
    if max_attempts is not None:
        _validate.positive_int(max_attempts, "max_attempts", maximum=1_000_000)
    if retry is not None and not callable(retry):
        raise InvalidArgument(f"retry must be a callable (job, error) -> seconds, got {retry!r}")
    for name, flag in (("per_key", per_key), ("ordered", ordered)):
        if not isinstance(flag, bool):
            raise InvalidArgument(f"{name} must be True or False, got {flag!r}")
    if per_key and concurrency_limit is None and rate_limit is None:
        raise InvalidArgument("per_key=True limits nothing without concurrency_limit or rate_limit")
    if ordered and concurrency_limit not in (None, 1):
        raise InvalidArgument(
            f"ordered=True runs one job at a time per key: concurrency_limit must be 1 or "
            f"None, got {concurrency_limit!r}"
        )
    if ordered and rate_limit is not None and not per_key:
        raise InvalidArgument(
            "ordered=True is per key: its rate_limit must be per key too (per_key=True)"
        )
    if on_dead not in ("hold", "skip"):
        raise InvalidArgument(f"on_dead must be 'hold' or 'skip', got {on_dead!r}")
    if on_dead != "hold" and not ordered:
        raise InvalidArgument("on_dead applies to ordered entrypoints (ordered=True)")
    return {
        "concurrency_limit": concurrency_limit,
        "rate_limit": None if rate_limit is None else float(rate_limit),
        "max_attempts": max_attempts,
        "timeout": _validate.seconds(timeout, "timeout", allow_zero=False),
        "retry_delay": retry,
        "per_key": per_key or ordered,
        "ordered": ordered,
        "on_dead": on_dead,
    }


def schedule(
    cron: str,
    *,
    entrypoint: str,
    queue: str,
    served: Collection[str],
    taken: Collection[str],
    payload: JSON,
    name: str | None,
    catch_up: int,
    tz: str | None = None,
) -> Schedule:
    """A checked :class:`Schedule` of a worker that serves ``served`` queues and has
    schedules named ``taken`` already."""
    if not isinstance(cron, str):
        raise InvalidArgument(f"cron expression must be a str, not {type(cron).__name__}")
    # The zone travels in the expression as it is stored (cronie's CRON_TZ= prefix), so
    # whoever reads the schedule back (admin.list_schedules) reads the same ticks.
    cron = with_zone(cron, tz)
    parsed = Cron(cron)  # refuses an expression that never fires
    target = _validate.check_queue_name(queue)
    if target not in served:
        raise InvalidArgument(f"schedule queue {target!r} is not served by this worker")
    if isinstance(catch_up, bool) or not isinstance(catch_up, int) or catch_up < 0:
        raise InvalidArgument(f"catch_up must be an int >= 0, got {catch_up!r}")
    label = name or f"{target}:{entrypoint}:{cron}"
    if label in taken:
        raise InvalidArgument(f"schedule {label!r} is already registered")
    if payload is not None:
        _validate.json_text(payload, f"schedule {label!r}: payload")
    return Schedule(label, parsed, target, entrypoint, payload, catch_up)


H = TypeVar("H", bound=Callable[..., Any])


class Handlers:
    """The registration half of a worker (both faces): ``@worker.entrypoint`` and
    ``@worker.schedule``. The face says what a handler may be (``_is_handler``)."""

    _entrypoints: dict[str, Entrypoint]
    _schedules: list[Schedule]
    _queues: tuple[str, ...]
    _contexts: Mapping[str, Any]
    _is_handler: Callable[[Callable[..., Any]], bool]
    _handler_kinds: str

    def entrypoint(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: float | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        per_key: bool = False,
        ordered: bool = False,
        on_dead: str = "hold",
    ) -> Callable[[H], H]:
        """Register the decorated function as the handler of jobs with this entrypoint.

        ``concurrency_limit``: most jobs of this entrypoint running at once across every
        worker on every machine. ``rate_limit``: most jobs started per second across
        every worker. ``max_attempts``: overrides the queue's for jobs that do not set
        their own. ``timeout``: seconds before the attempt fails (an ``async def``
        handler is cancelled; a thread cannot be: ``worker.cancelled(job)`` turns True
        and the job keeps its lease and slot until the handler returns). ``retry(job,
        error)``: seconds until the next attempt (``None``: the queue's backoff).

        Flow control by key (docs/flow-control.md): ``per_key=True`` makes both limits
        hold per job key (``enqueue(..., key=...)``) instead of for the entrypoint as a
        whole; ``rate_limit`` then spends each job's ``weight``. ``ordered=True``: jobs
        of a key run one at a time in enqueue order, a failing job holding the rest of
        its key until it completes, is cancelled, or dies; ``on_dead="hold"`` (the
        default) keeps a dead job holding its key until it is retried or deleted,
        ``"skip"`` lets the key go on past it.

        >>> @worker.entrypoint("report", concurrency_limit=2, rate_limit=10, timeout=300)
        ... def report(job: Message) -> None: ...
        """
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InvalidArgument(f"entrypoint name must be a non-empty str, got {name!r}")
        checked = entrypoint_options(  # now, not when decorating
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            max_attempts=max_attempts,
            timeout=timeout,
            retry=retry,
            per_key=per_key,
            ordered=ordered,
            on_dead=on_dead,
        )

        def register(fn: H) -> H:
            if not self._is_handler(fn):
                raise InvalidArgument(
                    f"{fn!r} cannot be a handler of {type(self).__name__}: "
                    f"a handler is {self._handler_kinds}"
                )
            if name in self._entrypoints:
                raise InvalidArgument(f"entrypoint {name!r} is already registered")
            self._entrypoints[name] = Entrypoint(
                name,
                fn,
                **checked,
                parse=parser_for(fn),
                coroutine=inspect.iscoroutinefunction(fn),
            )
            return fn

        return register

    def schedule(
        self,
        cron: str,
        *,
        entrypoint: str,
        queue: str | None = None,
        payload: JSON = None,
        name: str | None = None,
        catch_up: int = 0,
        tz: str | None = None,
    ) -> Callable[[H], H]:
        """Enqueue a job for ``entrypoint`` at every tick of ``cron``, exactly once per
        tick however many workers run the schedule; the job gets retries and history like
        any other. ``tz``: an IANA zone whose wall clock the fields are read on (default
        UTC); a tick in the hour skipped by a daylight-saving change fires once at the
        change, one in the hour that repeats fires once, the first time. ``catch_up``:
        on start, enqueue up to that many ticks missed while no worker ran (0: skip
        them). Decorates the handler of ``entrypoint``. An expression that never fires
        (``0 0 30 2 *``) or an unknown zone is refused here.

        >>> @worker.schedule("0 9 * * mon-fri", entrypoint="digest", tz="Europe/Berlin")
        ... def digest(job: Message) -> None: ...
        """
        self._schedules.append(
            schedule(
                cron,
                entrypoint=entrypoint,
                queue=queue or self._queues[0],
                served=self._contexts,
                taken={s.name for s in self._schedules},
                payload=payload,
                name=name,
                catch_up=catch_up,
                tz=tz,
            )
        )

        def register(fn: H) -> H:
            if entrypoint not in self._entrypoints:
                self.entrypoint(entrypoint)(fn)
            return fn

        return register

    @property
    def entrypoints(self) -> Mapping[str, Entrypoint]:
        """Registered entrypoints by name."""
        return dict(self._entrypoints)
