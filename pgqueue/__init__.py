"""pgqueue: a PostgreSQL job and message queue for SQLAlchemy 2, sync and async.

>>> from pgqueue import SyncAdmin, SyncProducer      # doctest: +SKIP
>>> admin = SyncAdmin("postgresql://localhost/app")   # doctest: +SKIP
>>> admin.install(); admin.create_queue("emails")     # doctest: +SKIP
>>> SyncProducer(admin.engine, "emails").enqueue({"to": "a@example.org"})  # doctest: +SKIP
"""

from ._migrate import process_revision_directives
from .admin import SyncAdmin
from .admin_async import AsyncAdmin
from .consumer import SyncConsumer
from .consumer_async import AsyncConsumer
from .errors import (
    DuplicateJob,
    ForeignNode,
    InvalidArgument,
    InvalidDelay,
    InvalidPayload,
    InvalidQueueName,
    InvalidResult,
    InvalidWorkflow,
    JobNotFound,
    JobTimeout,
    NotRunning,
    PgQueueError,
    QueueAlreadyExists,
    QueueNotFound,
    SchemaNotInstalled,
    Snooze,
    UnknownEntrypoint,
    WaitTimeout,
    WorkflowCycle,
    WrongBindType,
)
from .producer import SyncProducer
from .producer_async import AsyncProducer
from .schema import include_name, metadata
from .types import (
    HeldBack,
    JobInfo,
    JobOutcome,
    JobSpec,
    KeyMetrics,
    LeaderInfo,
    MaintenanceReport,
    Message,
    QueueInfo,
    QueueMetrics,
    RequeueReport,
    ScheduleInfo,
    WorkerInfo,
    WorkflowInfo,
    WorkflowNodeInfo,
    WorkflowOutcome,
    WorkflowRun,
    WorkflowSummary,
)
from .worker import SyncWorker
from .worker_async import AsyncWorker
from .workflow import Node, Workflow, chain, group

__version__ = "0.1.0"

__all__ = [
    "AsyncAdmin",
    "AsyncConsumer",
    "AsyncProducer",
    "AsyncWorker",
    "DuplicateJob",
    "ForeignNode",
    "HeldBack",
    "InvalidArgument",
    "InvalidDelay",
    "InvalidPayload",
    "InvalidQueueName",
    "InvalidResult",
    "InvalidWorkflow",
    "JobInfo",
    "JobNotFound",
    "JobOutcome",
    "JobSpec",
    "JobTimeout",
    "KeyMetrics",
    "LeaderInfo",
    "MaintenanceReport",
    "Message",
    "Node",
    "NotRunning",
    "PgQueueError",
    "QueueAlreadyExists",
    "QueueInfo",
    "QueueMetrics",
    "QueueNotFound",
    "RequeueReport",
    "ScheduleInfo",
    "SchemaNotInstalled",
    "Snooze",
    "SyncAdmin",
    "SyncConsumer",
    "SyncProducer",
    "SyncWorker",
    "UnknownEntrypoint",
    "WaitTimeout",
    "WorkerInfo",
    "Workflow",
    "WorkflowCycle",
    "WorkflowInfo",
    "WorkflowNodeInfo",
    "WorkflowOutcome",
    "WorkflowRun",
    "WorkflowSummary",
    "WrongBindType",
    "chain",
    "group",
    "include_name",
    "metadata",
    "process_revision_directives",
]
