"""The dashboard's pages (GET): overview, queue, jobs, job, dead letters, workflows,
workers, schedules, system, audit log, and the live-update event stream."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select, text
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from .._cron import Cron
from .._rows import job_info
from .._sql.jobs import STATUSES
from .._statements import for_schema
from .._stats import DURATION_BUCKETS, percentile
from ..errors import InvalidArgument
from ..types import JobInfo, KeyMetrics
from . import _queries, _queries_system, _queries_workflows
from ._dashboard import PAGE_SIZE, VERBS, Dashboard, dashboard_of
from ._format import fmt_chart
from ._graph import layout


async def overview(request: Request) -> Response:
    d = dashboard_of(request)
    statement, _ = d.q.overview
    queues = await d.rows(statement, b_cap=_queries.OVERVIEW_CAP)
    rates = await d.rows(d.q.rates)
    now = (await d.rows(text("SELECT pg_catalog.now()")))[0][0]
    by_queue: dict[str, list[tuple[datetime, int, int]]] = {}
    for r in rates:
        by_queue.setdefault(r.queue, []).append((r.minute, r.completed, r.failed))
    charts = {q.name: fmt_chart(by_queue.get(q.name, []), now) for q in queues}
    return d.render(
        request,
        "overview.html",
        queues=queues,
        charts=charts,
        statuses=_queries.HOT,
        cap=_queries.OVERVIEW_CAP,
    )


#: Partition keys shown on a queue's page (docs/flow-control.md).
TOP_KEYS = 10


async def queue_page(request: Request) -> Response:
    d = dashboard_of(request)
    name = request.path_params["name"]
    _, statement = d.q.overview
    found = await d.rows(statement, b_queue=name, b_cap=_queries.COUNT_CAP)
    if not found:
        raise HTTPException(404, f"no queue {name!r}")
    entrypoints = await d.rows(d.q.entrypoint_rates, b_queue=name)
    histograms: dict[str, list[int]] = {}
    for r in await d.rows(d.q.entrypoint_durations, b_queue=name):
        histogram = histograms.setdefault(r.entrypoint, [0] * len(DURATION_BUCKETS))
        if 1 <= r.i <= len(histogram):
            histogram[r.i - 1] += int(r.n)
    durations = {e: (percentile(h, 0.5), percentile(h, 0.95)) for e, h in histograms.items()}
    rates = await d.rows(d.q.rates)
    now = (await d.rows(text("SELECT pg_catalog.now()")))[0][0]
    chart = fmt_chart([(r.minute, r.completed, r.failed) for r in rates if r.queue == name], now)
    # Flow control: the keys with the most running, then waiting, jobs (a read of the
    # queue's keyed jobs alone: admin.metrics would also count every job of the queue,
    # which the counts above already show, capped, from the indexes).
    keys = [
        KeyMetrics(r[0], r[1], int(r[2]), int(r[3]))
        for r in await d.rows(
            for_schema(d.schema).KEY_METRICS, b_queue=name, b_top=TOP_KEYS, b_entrypoints=None
        )
    ]
    return d.render(
        request,
        "queue.html",
        queue=found[0],
        keys=keys,
        top_keys=TOP_KEYS,
        entrypoints=entrypoints,
        durations=durations,
        queue_chart=chart,
        statuses=_queries.HOT,
        cap=_queries.COUNT_CAP,
    )


def job_filters(params: Mapping[str, Any], statuses: list[str]) -> dict[str, Any]:
    """The jobs page's filters as ``admin.list_jobs`` takes them."""
    headers: dict[str, Any] = {}
    for line in str(params.get("header") or "").splitlines():
        key, sep, raw = line.strip().partition("=")
        if not key:
            continue
        if not sep:
            raise InvalidArgument(f"header filter {line!r}: expected KEY=VALUE")
        try:
            headers[key] = json.loads(raw)
        except json.JSONDecodeError:
            headers[key] = raw
    return {
        "queue": params.get("queue") or None,
        "status": [s for s in statuses if s] or None,
        "entrypoint": params.get("entrypoint") or None,
        "headers": headers or None,
    }


async def jobs_page(request: Request) -> Response:
    d = dashboard_of(request)
    params = request.query_params
    job_id = params.get("id", "").strip()
    if job_id:
        if not job_id.isdigit():
            return d.render(request, "error.html", 400, message=f"not a job id: {job_id!r}")
        return RedirectResponse(request.scope.get("root_path", "") + f"/jobs/{job_id}", 303)
    statuses = params.getlist("status")
    try:
        where = job_filters(params, statuses)
        after = params.get("after")
        after_id = int(after) if after and after.isdigit() else None
        searched = None
        if where["headers"] is not None:
            jobs, searched = await _header_search(d, where, after_id)
        else:
            async with d.engine.connect() as conn:
                await d.read(conn)  # a filter that reads too much is stopped (statement_timeout)
                jobs = await d.admin.list_jobs(
                    **where, after_id=after_id, limit=PAGE_SIZE + 1, bind=conn
                )
    except InvalidArgument as exc:
        return d.render(request, "error.html", 400, message=str(exc))
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
    next_after = jobs[-1].id if more and jobs else None
    if searched is not None and not more and searched[0] > 1:
        next_after = searched[0]  # this window had fewer matches: search the older ids
    queues = [q.name for q in await d.admin.list_queues()]
    request.scope["pgqueue_live_page"] = False  # a selection must not be redrawn away
    kept = [(k, v) for k, v in params.multi_items() if k != "done"]
    return d.render(
        request,
        "jobs.html",
        jobs=jobs,
        more=more,
        queues=queues,
        all_statuses=STATUSES,
        statuses=statuses,
        filters={
            "queue": params.get("queue", ""),
            "entrypoint": params.get("entrypoint", ""),
            "header": params.get("header", ""),
        },
        after=params.get("after"),
        next_after=next_after,
        searched=searched,
        done=params.get("done"),
        verbs=VERBS,
        back="/jobs" + ("?" + urlencode(kept) if kept else ""),
    )


async def _header_search(
    d: Dashboard, where: dict[str, Any], after_id: int | None
) -> tuple[list[JobInfo], tuple[int, int]]:
    """The jobs a filter with headers matches among the ``HEADER_WINDOW`` ids below
    ``after_id`` (the newest id without one), and the ids searched [floor, before)."""
    if after_id is None:
        ((newest,),) = await d.rows(for_schema(d.schema).MAX_JOB_ID)
        after_id = int(newest) + 1
    floor = max(1, after_id - _queries.HEADER_WINDOW)
    statement = _queries.header_search(d.schema, where)
    if statement is None:
        return [], (floor, after_id)
    rows = await d.rows(statement, b_floor=floor, b_before=after_id, b_limit=PAGE_SIZE + 1)
    return [job_info(r) for r in rows], (floor, after_id)


async def job_page(request: Request) -> Response:
    d = dashboard_of(request)
    job_id = request.path_params["id"]
    try:
        job = await d.admin.get_job(job_id)
    except InvalidArgument as exc:
        return d.render(request, "error.html", 400, message=str(exc))
    if job is None:
        return d.render(
            request,
            "error.html",
            404,
            message=f"no job {job_id}: it never existed, or it finished and was not kept",
        )
    lease = await _lease(d, job)
    workflow = await d.rows(d.q.job_workflow, b_id=job.id)
    return d.render(
        request,
        "job.html",
        job=job,
        lease=lease,
        workflow=workflow[0] if workflow else None,
        result=getattr(job, "result", None),
        # A completed job's result (None too); nothing to show for one not completed.
        has_result=job.status == "completed" or job.result is not None,
        done=request.query_params.get("done"),
        verbs=VERBS,
    )


async def _lease(d: Dashboard, job: JobInfo) -> dict[str, Any] | None:
    """The lease panel of a running job: who holds it, until when, and how lately
    its holder's heartbeat was seen."""
    if job.status != "running":
        return None
    now = (await d.rows(text("SELECT pg_catalog.now()")))[0][0]
    panel: dict[str, Any] = {
        "owner": job.locked_by,
        "expires_at": job.available_at,
        "expires_in": (job.available_at - now) if job.available_at else None,
        "cancel_requested": job.cancel_requested,
        "worker": None,
    }
    match = re.match(r"^(\d+)@", job.locked_by or "")
    if match:
        found = await d.rows(d.q.worker_heartbeat, b_worker_id=int(match.group(1)))
        if found:
            panel["worker"] = found[0]
    return panel


async def dead_page(request: Request) -> Response:
    d = dashboard_of(request)
    groups = await d.rows(d.q.dead_groups)
    read: dict[str, int] = {}
    for g in groups:
        read[g.queue] = read.get(g.queue, 0) + int(g.count)
    sampled = sorted(name for name, n in read.items() if n >= _queries.DEAD_SAMPLE)
    return d.render(
        request,
        "dead.html",
        groups=groups,
        sampled=sampled,
        sample=_queries.DEAD_SAMPLE,
        done=request.query_params.get("done"),
    )


#: Workflow runs per page of the list.
RUNS_PAGE = 50


async def workflows_page(request: Request) -> Response:
    d = dashboard_of(request)
    before = request.query_params.get("before", "")
    runs = await d.admin.list_workflows(
        before=int(before) if before.isdigit() else None, limit=RUNS_PAGE + 1
    )
    return d.render(
        request,
        "workflows.html",
        runs=runs[:RUNS_PAGE],
        more=len(runs) > RUNS_PAGE,
        before=before,
    )


#: The order a run's counts are shown in (any other status after them).
NODE_STATUSES = ("blocked", "queued", "scheduled", "running", "completed", "archived", "dead")


async def workflow_page(request: Request) -> Response:
    d = dashboard_of(request)
    run_id = request.path_params["id"]
    found = await d.rows(d.q.workflow_run, b_workflow_id=run_id)
    if not found:
        raise HTTPException(404, f"no workflow run {run_id}")
    run = found[0]
    by_status = {
        r.status: int(r.n) for r in await d.rows(d.q.workflow_counts, b_workflow_id=run_id)
    }
    counts = [(s, by_status.pop(s)) for s in NODE_STATUSES if s in by_status]
    counts += sorted(by_status.items())
    nodes = await d.rows(
        d.q.workflow_nodes, b_workflow_id=run_id, b_limit=_queries_workflows.GRAPH_MAX
    )
    graph = None
    if run.nodes <= _queries_workflows.GRAPH_MAX:
        edges = [
            (int(p), int(c)) for p, c in await d.rows(d.q.workflow_edges, b_workflow_id=run_id)
        ]
        graph = layout(nodes, edges)
    live = sum(n for s, n in counts if s in ("blocked", "queued", "scheduled", "running"))
    failed = sum(n for s, n in counts if s in ("dead", "cancelled", "deleted"))
    return d.render(
        request,
        "workflow.html",
        run=run,
        counts=counts,
        nodes=nodes,
        graph=graph,
        graph_max=_queries_workflows.GRAPH_MAX,
        live_nodes=live,
        failed_nodes=failed,
        done=request.query_params.get("done"),
    )


async def workers_page(request: Request) -> Response:
    d = dashboard_of(request)
    workers = await d.admin.list_workers(include_stopped=request.query_params.get("all") == "1")
    flight: dict[str, int] = {r.locked_by: r.n for r in await d.rows(d.q.in_flight)}
    now = (await d.rows(text("SELECT pg_catalog.now()")))[0][0]
    rows = [
        {
            "w": w,
            "age": now - w.heartbeat_at,
            "in_flight": sum(n for owner, n in flight.items() if owner.startswith(f"{w.id}@")),
        }
        for w in workers
    ]
    return d.render(
        request, "workers.html", workers=rows, show_all=request.query_params.get("all") == "1"
    )


async def schedules_page(request: Request) -> Response:
    d = dashboard_of(request)
    schedules = await d.admin.list_schedules()
    now = (await d.rows(text("SELECT pg_catalog.now()")))[0][0]
    rows = []
    for s in schedules:
        missed: int | None = None
        if s.last_tick is not None:
            try:
                # Ticks due since the last one enqueued but the newest (which may be
                # being enqueued right now): each was skipped, or is late.
                due = Cron(s.cron).ticks_between(s.last_tick, now, 1000)
                missed = max(0, len(due) - 1)
            except InvalidArgument:
                missed = None
        rows.append({"s": s, "missed": missed})
    return d.render(request, "schedules.html", schedules=rows, now=now)


async def system_page(request: Request) -> Response:
    d = dashboard_of(request)
    tables = await d.rows(_queries_system.TABLE_SIZES, schema=d.schema)
    indexes = await d.rows(_queries_system.INDEX_SIZES, schema=d.schema)
    holders = await d.rows(_queries_system.XMIN_HOLDERS)
    others = await d.rows(_queries_system.PREPARED_AND_SLOTS)
    archive = d.q.tables["pgqueue_archive"]
    retention = await d.rows(d.q.retention)
    partitions = await d.rows(_queries_system.ARCHIVE_PARTITIONS, schema=d.schema)
    oldest = {}
    for r in retention:  # one index probe per queue: (queue, finished_at)
        found = await d.rows(
            select(func.pg_catalog.min(archive.c.finished_at)).where(archive.c.queue == r.name)
        )
        oldest[r.name] = found[0][0]
    version = (await d.rows(text("SHOW server_version")))[0][0]
    return d.render(
        request,
        "system.html",
        tables=tables,
        indexes=indexes,
        holders=holders,
        others=others,
        oldest=oldest,
        retention=retention,
        partitions=partitions,
        retention_cap=_queries_system.RETENTION_CAP,
        version=version,
    )


async def audit_page(request: Request) -> Response:
    d = dashboard_of(request)
    before = request.query_params.get("before", "")
    entries = await d.rows(
        d.q.list_audit, b_before=int(before) if before.isdigit() else 2**63 - 1, b_limit=100
    )
    return d.render(request, "audit.html", entries=entries)


async def events(request: Request) -> Response:
    d = dashboard_of(request)
    return StreamingResponse(
        d.hub.stream(request.is_disconnected, d.poll_interval),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},
    )


# --------------------------------------------------------------------------- actions
