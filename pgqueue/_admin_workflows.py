# DO NOT EDIT: generated from _admin_workflows_async.py by tools/async_to_sync.py
"""Workflow runs on the admin: read, list, cancel and retry them (cancelling is job
control over a run's live nodes)."""

from __future__ import annotations

from . import _validate
from ._admin_jobs import SyncJobAdmin
from ._drive import Bind, check_bind, run
from ._plans import workflow as workflow_plans
from .types import WorkflowInfo, WorkflowRun, WorkflowSummary


class SyncWorkflowAdmin(SyncJobAdmin):
    """The workflow verbs of :class:`~pgqueue.SyncAdmin`."""

    def get_workflow(
        self, workflow: WorkflowRun | int, *, bind: Bind | None = None
    ) -> WorkflowInfo | None:
        """A workflow run (``producer.enqueue_workflow``): its nodes in the order they were
        added, with each node's status (live, or how it ended: kept in the workflow's
        own tables, whatever the queue keeps), its edges and counts by status. None if
        there is no such run.

        >>> info = admin.get_workflow(run.id)        # doctest: +SKIP
        >>> info.counts                                    # doctest: +SKIP
        {'completed': 3, 'blocked': 1, 'running': 1}
        """
        if bind is not None:
            check_bind(bind)
        plan = workflow_plans.get_workflow(self._ctx, _run_id(workflow))
        return run(self._engine, bind, plan, self._ctx)

    def list_workflows(
        self, *, before: int | None = None, limit: int = 50, bind: Bind | None = None
    ) -> list[WorkflowSummary]:
        """Workflow runs, newest first (``before``: an id, for the next page)."""
        if bind is not None:
            check_bind(bind)
        limit = _validate.positive_int(limit, "limit", maximum=10_000)
        after = None if before is None else _validate.job_id(before)
        plan = workflow_plans.list_workflows(self._ctx, after, limit)
        return run(self._engine, bind, plan, self._ctx)

    def cancel_workflow(
        self, workflow: WorkflowRun | int, *, bind: Bind | None = None
    ) -> list[int]:
        """Cancel every live node of a run (as :meth:`cancel_jobs`: waiting and queued
        ones at once, running ones by request); the ids cancelled. Dead nodes stay (
        :meth:`retry_workflow` or ``delete_jobs``)."""
        if bind is not None:
            check_bind(bind)
        ids = run(
            self._engine,
            bind,
            workflow_plans.workflow_live_ids(self._ctx, _run_id(workflow)),
            self._ctx,
        )
        if not ids:
            return []
        return self.cancel_jobs(ids, bind=bind)

    def retry_workflow(self, workflow: WorkflowRun | int, *, bind: Bind | None = None) -> list[int]:
        """Run a run's dead and cancelled nodes again (cancelled ones come back from the
        archive under their ids, with a fresh set of attempts): each waits again for
        its parents that have not completed. The ids put back. One transaction."""
        if bind is not None:
            check_bind(bind)
        plan = workflow_plans.retry_workflow(self._ctx, _run_id(workflow))
        return run(self._engine, bind, plan, self._ctx)


def _run_id(run: object) -> int:
    if isinstance(run, WorkflowRun):
        return run.id
    return _validate.job_id(run)
