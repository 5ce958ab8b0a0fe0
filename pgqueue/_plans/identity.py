"""Registration plans: a producer, consumer or worker's row in ``pgqueue_workers``."""

from __future__ import annotations

from collections.abc import Sequence

from .. import _rows
from ..types import WorkerInfo
from . import Context, Step, Steps, plan


@plan(transaction=False)
def register(
    ctx: Context,
    kind: str,
    queues: Sequence[str],
    entrypoints: Sequence[str] | None,
    hostname: str,
    port: int | None,
    pid: int,
) -> Steps[WorkerInfo]:
    (row,) = yield Step(
        ctx.sql.REGISTER_WORKER,
        {
            "b_kind": kind,
            "b_queues": ",".join(queues),
            "b_entrypoints": None if entrypoints is None else list(entrypoints),
            "b_hostname": hostname,
            "b_port": port,
            "b_pid": pid,
        },
    )
    return _rows.worker_info(row)


@plan(transaction=False)
def heartbeat(ctx: Context, worker_id: int) -> Steps[WorkerInfo | None]:
    rows = yield Step(ctx.sql.HEARTBEAT, {"b_worker_id": worker_id})
    return _rows.worker_info(rows[0]) if rows else None


@plan(transaction=False)
def set_status(ctx: Context, worker_id: int, status: str) -> Steps[WorkerInfo | None]:
    rows = yield Step(ctx.sql.SET_WORKER_STATUS, {"b_worker_id": worker_id, "b_status": status})
    return _rows.worker_info(rows[0]) if rows else None


@plan(transaction=False)
def get_worker(ctx: Context, worker_id: int) -> Steps[WorkerInfo | None]:
    rows = yield Step(ctx.sql.SELECT_WORKER, {"b_worker_id": worker_id})
    return _rows.worker_info(rows[0]) if rows else None


@plan(transaction=False)
def is_healthy(ctx: Context, worker_id: int, max_age: float) -> Steps[bool]:
    rows = yield Step(ctx.sql.WORKER_HEALTHY, {"b_worker_id": worker_id, "b_max_age": max_age})
    return bool(rows and rows[0][0])
