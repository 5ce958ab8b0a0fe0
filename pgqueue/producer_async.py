"""AsyncProducer: put jobs on a queue."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import _validate, _validate_jobs, tracing
from ._drive import AsyncBind, acheck_bind, arun
from ._identity_async import AsyncIdentity
from ._kept import AsyncKept
from ._plans import producer as producer_plans
from ._plans import workflow as workflow_plans
from ._waiter_async import AsyncWaiter
from .errors import InvalidArgument, InvalidDelay
from .types import (
    JSON,
    JobInfo,
    JobOutcome,
    JobSpec,
    Message,
    WorkflowOutcome,
    WorkflowRun,
)
from .workflow import Workflow


class AsyncProducer(AsyncIdentity):
    """Puts jobs on one queue.

    >>> engine = create_async_engine("postgresql+asyncpg://localhost/app")  # doctest: +SKIP
    >>> producer = AsyncProducer(engine, "emails", hostname="web-1", port=8000)  # doctest: +SKIP
    >>> m = await producer.enqueue({"to": "a@example.org"}, priority=5)  # doctest: +SKIP
    >>> m.status                                                          # doctest: +SKIP
    'queued'

    Every method that writes takes ``bind=`` (an ``AsyncConnection`` or
    ``AsyncSession``): the job is then written inside the caller's transaction and exists
    if and only if that transaction commits.

    :meth:`wait`, :meth:`wait_many` and :meth:`enqueue_and_wait` wait for jobs to end and
    return their :class:`~pgqueue.types.JobOutcome` (a handler's return value is its
    result). They are woken by LISTEN/NOTIFY on one connection of the producer's own
    (opened on the first wait); with ``listen=False`` (PgBouncer in transaction mode)
    they poll instead.

    Payloads are JSON: pydantic models and dataclass instances are sent as their JSON;
    ``json_default(value)`` is asked for anything else ``json`` cannot encode (a
    ``datetime``, a ``UUID``, a ``Decimal``...) and returns what it can, or raises
    ``TypeError`` (then ``InvalidPayload``), as ``json.dumps(default=)``.
    """

    _kind = "producer"

    def __init__(
        self,
        engine: AsyncEngine | str | URL,
        queue: str,
        *,
        schema: str = "public",
        listen: bool = True,
        hostname: str | None = None,
        port: int | None = None,
        json_default: Callable[[Any], Any] | None = None,
    ) -> None:
        self._encode = _validate.encoder(json_default)
        super().__init__(engine, [queue], schema=schema, hostname=hostname, port=port)
        self._queue = queue
        self._waiter = AsyncWaiter(self._engine, self._ctx, listen=bool(listen))
        # The connection back-to-back enqueues share (pgqueue._kept).
        self._kept = AsyncKept(self._engine)

    @property
    def queue(self) -> str:
        """The queue this producer writes to."""
        return self._queue

    async def enqueue(
        self,
        payload: JSON,
        *,
        priority: int = 0,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        entrypoint: str | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
        weight: int | None = None,
        on_duplicate: _validate.OnDuplicate = "raise",
        bind: AsyncBind | None = None,
    ) -> Message:
        """Enqueue one job and return it.

        ``priority``: higher runs first (-32768..32767). ``delay`` (seconds or timedelta)
        or ``run_at`` (aware datetime): when it becomes available, by the database
        clock. ``dedupe_key``: at most one live job per key in this queue; a duplicate
        raises :class:`~pgqueue.errors.DuplicateJob`, or with ``on_duplicate="skip"``
        the live job is returned instead. ``entrypoint`` defaults to the queue name;
        ``max_attempts`` defaults to the queue's. ``key``: the job's partition key for
        entrypoints limited per key or ordered, ``weight``: the units of its key's rate
        budget it spends (docs/flow-control.md).

        >>> async with AsyncSession(engine) as s, s.begin():   # doctest: +SKIP
        ...     s.add(Order(id=1))
        ...     await producer.enqueue({"order": 1}, bind=s)   # commits with the order
        """
        defaults = JobSpec(
            None,
            priority=priority,
            delay=delay,
            run_at=run_at,
            dedupe_key=dedupe_key,
            headers=headers,
            entrypoint=entrypoint,
            max_attempts=max_attempts,
            key=key,
            weight=weight,
        )
        (message,) = await self._insert([payload], defaults, on_duplicate, bind)
        return message

    async def batch_enqueue(
        self,
        payloads: Sequence[JSON | JobSpec],
        *,
        priority: int = 0,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        headers: Mapping[str, Any] | None = None,
        entrypoint: str | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
        weight: int | None = None,
        on_duplicate: _validate.OnDuplicate = "raise",
        bind: AsyncBind | None = None,
    ) -> list[Message]:
        """Enqueue many jobs in one statement; returns their Messages in input order.

        Keyword options apply to every job; wrap a payload in
        :class:`~pgqueue.types.JobSpec` to give it options of its own. The batch is all
        or nothing: invalid input or a duplicate (with ``on_duplicate="raise"``) enqueues
        none of it.

        >>> jobs = [{"n": 1}, JobSpec({"n": 2}, priority=9)]  # doctest: +SKIP
        >>> await producer.batch_enqueue(jobs)               # doctest: +SKIP
        """
        if isinstance(payloads, str | bytes | Mapping) or not isinstance(payloads, Sequence):
            raise InvalidArgument("batch_enqueue takes a list of payloads or JobSpecs")
        defaults = JobSpec(
            None,
            priority=priority,
            delay=delay,
            run_at=run_at,
            headers=headers,
            entrypoint=entrypoint,
            max_attempts=max_attempts,
            key=key,
            weight=weight,
        )
        return await self._insert(payloads, defaults, on_duplicate, bind)

    async def enqueue_delayed(
        self,
        payload: JSON,
        delay_seconds: float | timedelta,
        *,
        bind: AsyncBind | None = None,
        **options: Any,
    ) -> Message:
        """Enqueue a job that becomes visible ``delay_seconds`` from now (database clock).

        >>> await producer.enqueue_delayed({"reminder": "x"}, 300)  # doctest: +SKIP
        """
        if _validate.seconds(delay_seconds, "delay_seconds") is None:
            raise InvalidDelay("delay_seconds is required")
        return await self.enqueue(payload, delay=delay_seconds, bind=bind, **options)

    async def extend_visibility(
        self, message_id: int, seconds: float | timedelta, *, bind: AsyncBind | None = None
    ) -> bool:
        """Extend the lease of a job being processed (the seeds' meaning): it then lasts
        at least ``seconds`` (> 0) from now, by the database clock, and never less than
        it already did. False if the job is not found in this queue or is not currently
        leased (queued, scheduled, dead, finished, or its lease already expired):
        nothing is changed then. To postpone a job that waits, use
        ``admin.reschedule``.

        >>> await producer.extend_visibility(m.id, 30)  # doctest: +SKIP
        True
        """
        self._check_not_stopped()
        secs = _validate.positive_seconds(seconds, "seconds")
        job_id = _validate.job_id(message_id)
        plan = producer_plans.extend_visibility(self._ctx, job_id, secs)
        return await arun(self._engine, bind, plan, self._ctx)

    @overload
    async def wait(
        self, job: Message | JobInfo | int, *, timeout: float | timedelta | None = None
    ) -> JobOutcome: ...

    @overload
    async def wait(
        self, job: WorkflowRun, *, timeout: float | timedelta | None = None
    ) -> WorkflowOutcome: ...

    async def wait(
        self,
        job: Message | JobInfo | int | WorkflowRun,
        *,
        timeout: float | timedelta | None = None,
    ) -> JobOutcome | WorkflowOutcome:
        """Wait until a job has ended and return how: ``completed`` with its result,
        ``dead`` or ``cancelled`` with its error (or ``deleted``). A job that ended long
        ago returns at once, from what is kept (results for the queue's
        ``result_ttl``; the archive).

        ``timeout`` (seconds or a timedelta; None: no limit) raises
        :class:`~pgqueue.errors.WaitTimeout`; the job keeps running. A job that is not
        live and left nothing behind raises :class:`~pgqueue.errors.JobNotFound`: only
        jobs that return something, or that someone waits for before they end, or of a
        queue that archives, are remembered once completed.

        A :class:`~pgqueue.types.WorkflowRun` (``enqueue_workflow``) is waited for by its
        leaves: a :class:`~pgqueue.types.WorkflowOutcome`, ``completed`` when every leaf
        completed (their results in ``results``), else ``failed``.

        >>> m = await producer.enqueue({"n": 2})                 # doctest: +SKIP
        >>> (await producer.wait(m, timeout=10)).result           # doctest: +SKIP
        4
        """
        if isinstance(job, WorkflowRun):
            leaves = await self.wait_many(list(job.leaf_ids), timeout=timeout)
            status = "completed" if all(o.ok for o in leaves) else "failed"
            return WorkflowOutcome(job.id, status, {o.id: o for o in leaves})
        (outcome,) = await self.wait_many([job], timeout=timeout)
        return outcome

    async def enqueue_workflow(
        self, workflow: Workflow, *, bind: AsyncBind | None = None
    ) -> WorkflowRun:
        """Enqueue a :class:`~pgqueue.Workflow` in one transaction (the caller's with
        ``bind=``): its jobs (nodes without parents queued now, the others ``blocked``
        until every parent has completed), its nodes and edges, in two statements
        whatever its size. A cycle, a node of another workflow or an empty workflow
        raises before anything is written (:class:`~pgqueue.errors.InvalidWorkflow`);
        an unknown queue raises :class:`~pgqueue.errors.QueueNotFound`. Nodes without
        a ``queue`` go to this producer's.

        >>> wf = Workflow("etl")                                           # doctest: +SKIP
        >>> a = wf.add({"day": 1}, entrypoint="extract")                   # doctest: +SKIP
        >>> wf.add({}, entrypoint="report", after=[a])                     # doctest: +SKIP
        >>> run = await producer.enqueue_workflow(wf)                      # doctest: +SKIP
        >>> (await producer.wait(run, timeout=60)).status                  # doctest: +SKIP
        'completed'
        """
        self._check_running()
        if bind is not None:
            acheck_bind(bind)
        if not isinstance(workflow, Workflow):
            raise InvalidArgument(f"expected a Workflow, got {type(workflow).__name__}")
        arrays = workflow.arrays(self._queue)
        plan = workflow_plans.enqueue_workflow(self._ctx, workflow.name, arrays)
        return await arun(self._engine, bind, plan, self._ctx)

    async def wait_many(
        self,
        jobs: Sequence[Message | JobInfo | int],
        *,
        timeout: float | timedelta | None = None,
    ) -> list[JobOutcome]:
        """Wait until every one of ``jobs`` has ended; their outcomes in input order. As
        :meth:`wait`; the timeout is for all of them together, and
        :class:`~pgqueue.errors.WaitTimeout` names the jobs still pending.

        >>> ms = await producer.batch_enqueue([{"n": i} for i in range(10)])  # doctest: +SKIP
        >>> [o.result for o in await producer.wait_many(ms, timeout=30)]      # doctest: +SKIP
        """
        self._check_not_stopped()
        ids = _validate.wait_ids(jobs)
        secs = _validate.seconds(timeout, "timeout")
        if not ids:
            return []
        outcomes = await self._waiter.wait(ids, secs)
        return [outcomes[i] for i in ids]

    async def enqueue_and_wait(
        self,
        payload: JSON,
        *,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        entrypoint: str | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
        weight: int | None = None,
        on_duplicate: _validate.OnDuplicate = "raise",
    ) -> JobOutcome:
        """Enqueue one job and wait for it to end (the RPC form): the options of
        :meth:`enqueue`, then as :meth:`wait`. The job is inserted already waited for,
        so however fast it runs its end is kept. No ``bind=``: the job must be committed
        before anyone can run it.

        >>> outcome = await producer.enqueue_and_wait({"n": 2}, timeout=5)  # doctest: +SKIP
        >>> outcome.status, outcome.result                                # doctest: +SKIP
        ('completed', 4)
        """
        secs = _validate.seconds(timeout, "timeout")
        defaults = JobSpec(
            None,
            priority=priority,
            delay=delay,
            run_at=run_at,
            dedupe_key=dedupe_key,
            headers=headers,
            entrypoint=entrypoint,
            max_attempts=max_attempts,
            key=key,
            weight=weight,
        )

        async def insert() -> Message:
            (message,) = await self._insert([payload], defaults, on_duplicate, None, awaited=True)
            return message

        # Unless a duplicate returned an older job, the one inserted cannot end unheard:
        # the wait listens from before the insert, and reads nothing until it is told.
        return await self._waiter.enqueue_and_wait(insert, secs, fresh=dedupe_key is None)

    async def shutdown(self) -> None:
        """As :meth:`AsyncIdentity.shutdown`; also gives back a connection kept between
        back-to-back enqueues (only the async face on asyncpg keeps one) and closes the
        waits' LISTEN connection."""
        try:
            await self._kept.close()
            await self._waiter.close()
        finally:
            await super().shutdown()

    async def _insert(
        self,
        items: Sequence[Any],
        defaults: JobSpec,
        on_duplicate: _validate.OnDuplicate,
        bind: AsyncBind | None,
        *,
        awaited: bool = False,
    ) -> list[Message]:
        self._check_running()
        if bind is not None:
            acheck_bind(bind)
        if on_duplicate not in ("raise", "skip"):
            raise InvalidArgument('on_duplicate must be "raise" or "skip"')
        if not items:
            _validate_jobs.validate_jobs(self._queue, items, defaults, self._encode)
            return []
        # A PRODUCER span; its context goes into the jobs' headers (pgqueue.tracing).
        with tracing.producer_span(self._queue, len(items)) as (span, carrier):
            items, defaults = tracing.carry(carrier, items, defaults)
            jobs = _validate_jobs.validate_jobs(self._queue, items, defaults, self._encode)
            plan = producer_plans.enqueue(
                self._ctx,
                jobs,
                on_duplicate=on_duplicate,
                in_caller_tx=bind is not None,
                awaited=awaited,
            )
            messages = await self._kept.run(bind, plan, self._ctx)
            tracing.enqueued(span, messages)
            return messages
