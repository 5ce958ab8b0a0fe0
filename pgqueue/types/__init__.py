"""Results handed to users: frozen dataclasses, never ORM objects or driver rows.

Declared by concern: jobs (``_jobs``), operations reports (``_operations``), workflows
(``_workflows``); every name is imported from here.
"""

from __future__ import annotations

from ._jobs import JOB_OPTIONS, JSON, OUTCOME_STATUSES, JobInfo, JobOutcome, JobSpec, Message, P
from ._operations import (
    HeldBack,
    KeyMetrics,
    LeaderInfo,
    MaintenanceReport,
    QueueInfo,
    QueueMetrics,
    RequeueReport,
    ScheduleInfo,
    WorkerInfo,
)
from ._workflows import (
    WorkflowInfo,
    WorkflowNodeInfo,
    WorkflowOutcome,
    WorkflowRun,
    WorkflowSummary,
)

__all__ = [
    "JOB_OPTIONS",
    "JSON",
    "OUTCOME_STATUSES",
    "HeldBack",
    "JobInfo",
    "JobOutcome",
    "JobSpec",
    "KeyMetrics",
    "LeaderInfo",
    "MaintenanceReport",
    "Message",
    "P",
    "QueueInfo",
    "QueueMetrics",
    "RequeueReport",
    "ScheduleInfo",
    "WorkerInfo",
    "WorkflowInfo",
    "WorkflowNodeInfo",
    "WorkflowOutcome",
    "WorkflowRun",
    "WorkflowSummary",
]
