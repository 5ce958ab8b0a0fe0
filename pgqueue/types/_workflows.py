"""Workflow runs as users see them: the handle, a run's nodes, summaries and outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._jobs import JobOutcome


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A workflow as enqueued (``producer.enqueue_workflow``): its id, and its nodes'
    job ids in the order they were added (``Workflow.add``), its leaves' among them."""

    id: int
    name: str
    job_ids: tuple[int, ...]
    leaf_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WorkflowNodeInfo:
    """One node of a run (``admin.get_workflow``): its job, and how it stands: a live
    status (``blocked`` while it waits for parents, ``queued``, ``scheduled``,
    ``running``, ``dead``) or how it ended (``completed``, ``cancelled``...)."""

    job_id: int
    position: int
    status: str
    queue: str | None
    entrypoint: str | None
    on_parent_failure: str
    last_error: str | None
    result: Any


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A run (``admin.get_workflow``): nodes in the order they were added, edges as
    (parent job id, child job id), and how many nodes have each status."""

    id: int
    name: str
    created_at: datetime
    nodes: tuple[WorkflowNodeInfo, ...]
    edges: tuple[tuple[int, int], ...]
    counts: Mapping[str, int]

    @property
    def done(self) -> bool:
        """Whether every node has ended (none is live, dead ones excepted)."""
        return all(
            n.status not in ("blocked", "queued", "scheduled", "running") for n in self.nodes
        )


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """A run as listed (``admin.list_workflows``): nodes completed and failed so far."""

    id: int
    name: str
    nodes: int
    created_at: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class WorkflowOutcome:
    """How a run ended (``producer.wait(run)``): ``completed`` when every leaf
    completed, else ``failed``; each leaf's :class:`JobOutcome` by job id, and their
    results (``results``: leaf job id to result, completed leaves only)."""

    id: int
    status: str
    leaves: Mapping[int, JobOutcome]

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def results(self) -> dict[int, Any]:
        return {i: o.result for i, o in self.leaves.items() if o.ok}
