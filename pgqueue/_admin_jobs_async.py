"""Job control on the admin: find jobs, and cancel, retry, delete or reschedule them
(by ids, or by filters)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from . import _validate, _validate_control
from ._drive import AsyncBind, arun
from ._plans import Context
from ._plans import jobs as jobs_plans
from .errors import InvalidArgument
from .types import JobInfo

#: A status, or several (``list_jobs(status=...)``).
Statuses = str | Sequence[str]


class AsyncJobAdmin:
    """The job verbs of :class:`~pgqueue.AsyncAdmin`."""

    _engine: AsyncEngine
    _ctx: Context

    async def get_job(self, job_id: int, *, bind: AsyncBind | None = None) -> JobInfo | None:
        """A job by id, live or finished (``None`` if there is no such job, or it was
        finished without being kept: see :class:`~pgqueue.JobInfo` for each status).

        >>> job = await admin.get_job(4812)            # doctest: +SKIP
        >>> job.status, job.attempts, job.last_error    # doctest: +SKIP
        ('dead', 5, 'ConnectionError: smtp down')
        >>> print(job.errors[-1]["traceback"])          # doctest: +SKIP
        """
        plan = jobs_plans.get_job(self._ctx, _validate.job_id(job_id))
        return await arun(self._engine, bind, plan, self._ctx)

    async def list_jobs(
        self,
        queue: str | None = None,
        *,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        after_id: int | None = None,
        limit: int = 100,
        bind: AsyncBind | None = None,
    ) -> list[JobInfo]:
        """Jobs newest first, live and finished alike, filtered by queue, status (one or
        several), entrypoint, dedupe_key and headers (a mapping the job's headers must
        contain). Page with ``after_id``: the last (smallest) id of the page before.

        Index-backed for a queue and/or statuses: each (queue, status) is one index
        range read newest first. ``entrypoint`` and ``headers`` filter what those
        ranges yield, so a rare entrypoint in a big queue reads more of it.

        >>> page = await admin.list_jobs("emails", status=["dead", "scheduled"])  # doctest: +SKIP
        >>> more = await admin.list_jobs("emails", status=["dead", "scheduled"],
        ...                              after_id=page[-1].id)                     # doctest: +SKIP
        >>> await admin.list_jobs(headers={"order_id": 4812})                      # doctest: +SKIP
        """
        where = _validate_control.job_filter(
            queue=queue,
            status=status,
            entrypoint=entrypoint,
            dedupe_key=dedupe_key,
            headers=headers,
        )
        after = None if after_id is None else _validate.job_id(after_id)
        size = _validate.positive_int(limit, "limit", maximum=_validate_control.MAX_LIST)
        plan = jobs_plans.list_jobs(self._ctx, where, after, size)
        return await arun(self._engine, bind, plan, self._ctx)

    async def cancel_jobs(
        self,
        ids: Sequence[int] | None = None,
        *,
        queue: str | None = None,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        bind: AsyncBind | None = None,
    ) -> list[int]:
        """Cancel jobs (by ``ids``, or every job the filters match, as in
        :meth:`list_jobs`); returns the ids cancelled, in order.

        A queued or scheduled job leaves its queue at once and is kept as ``cancelled``
        (whatever the queue's archive setting, until retention). A running job's
        cancellation is requested: its worker learns of it within a second (NOTIFY;
        else at its next heartbeat) and interrupts an ``async def`` handler, while a
        handler on a thread sees ``worker.cancelled(job)``. Either way the job ends
        ``cancelled`` and is never retried nor completed. A job that completed first is
        not in the list: exactly one of the two happened. Dead and finished jobs are
        not cancelled (``delete_jobs`` removes them). By filter, jobs are cancelled in
        batches of 5,000, each its own short transaction (without ``bind=``).

        >>> await admin.cancel_jobs([4812, 4813])                       # doctest: +SKIP
        [4812]
        >>> await admin.cancel_jobs(queue="emails", status="scheduled")  # doctest: +SKIP
        """
        plan = jobs_plans.cancel_jobs(
            self._ctx,
            *_targets(ids, jobs_plans.CANCELLABLE, queue, status, entrypoint, dedupe_key, headers),
        )
        return await arun(self._engine, bind, plan, self._ctx)

    async def retry_jobs(
        self,
        ids: Sequence[int] | None = None,
        *,
        queue: str | None = None,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        bind: AsyncBind | None = None,
    ) -> list[int]:
        """Make dead jobs, and jobs scheduled for a retry, available now; returns the
        ids retried. A dead job gets a fresh set of attempts (unless a live job now
        holds its dedupe_key: it stays dead); a retrying one keeps its count. Error
        histories are kept. Takes ids or filters, as :meth:`cancel_jobs`.

        >>> await admin.retry_jobs(queue="emails", status="dead")  # doctest: +SKIP
        [101, 102]
        """
        plan = jobs_plans.retry_jobs(
            self._ctx,
            *_targets(ids, jobs_plans.RETRYABLE, queue, status, entrypoint, dedupe_key, headers),
        )
        return await arun(self._engine, bind, plan, self._ctx)

    async def delete_jobs(
        self,
        ids: Sequence[int] | None = None,
        *,
        queue: str | None = None,
        status: Statuses | None = None,
        entrypoint: str | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        bind: AsyncBind | None = None,
    ) -> list[int]:
        """Delete jobs that are not running (cancel those first); returns the ids
        deleted. A live job leaves its queue, kept as ``deleted`` if the queue
        archives; a finished one leaves the archive for good. Takes ids or filters,
        as :meth:`cancel_jobs`.

        >>> await admin.delete_jobs([4812])                             # doctest: +SKIP
        [4812]
        >>> await admin.delete_jobs(queue="emails", status="completed")  # doctest: +SKIP
        """
        plan = jobs_plans.delete_jobs(
            self._ctx,
            *_targets(ids, jobs_plans.DELETABLE, queue, status, entrypoint, dedupe_key, headers),
        )
        return await arun(self._engine, bind, plan, self._ctx)

    async def reschedule(
        self,
        job_id: int,
        *,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        priority: int | None = None,
        bind: AsyncBind | None = None,
    ) -> bool:
        """Move a queued or scheduled job to ``run_at`` (timezone-aware) or ``delay``
        seconds from now, and/or give it a new ``priority``. False if the job is not
        queued or scheduled (running, dead, finished, or unknown).

        >>> await admin.reschedule(4812, delay=3600)    # doctest: +SKIP
        True
        >>> await admin.reschedule(4813, priority=10)   # doctest: +SKIP
        True
        """
        job = _validate.job_id(job_id)
        if run_at is not None and delay is not None:
            raise InvalidArgument("give run_at or delay, not both")
        if run_at is None and delay is None and priority is None:
            raise InvalidArgument("give run_at, delay or priority")
        plan = jobs_plans.reschedule(
            self._ctx,
            job,
            run_at=_validate.run_at(run_at),
            delay=_validate.seconds(delay, "delay"),
            priority=None if priority is None else _validate_control.priority(priority),
        )
        return await arun(self._engine, bind, plan, self._ctx)


def _targets(
    ids: Sequence[int] | None,
    allowed: Sequence[str],
    queue: str | None,
    status: Statuses | None,
    entrypoint: str | None,
    dedupe_key: str | None,
    headers: Mapping[str, Any] | None,
) -> tuple[list[int] | None, _validate_control.JobFilter]:
    """What a bulk verb acts on: ``ids`` (narrowed by ``status`` only), or the filters."""
    where = _validate_control.job_filter(
        queue=queue,
        status=status,
        entrypoint=entrypoint,
        dedupe_key=dedupe_key,
        headers=headers,
        allowed=allowed,
    )
    others = (queue, entrypoint, dedupe_key, headers)
    if ids is not None:
        if any(v is not None for v in others):
            raise InvalidArgument("give ids or filters (queue, entrypoint, ...), not both")
        return _validate_control.job_ids(ids), where
    if status is None and all(v is None for v in others):
        raise InvalidArgument(
            "give ids, or at least one filter (queue=, status=, ...): "
            "no filter would match every job"
        )
    return None, where
