"""The dashboard's ASGI app: pages, actions, the event stream."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._cron import Cron
from .._sql.jobs import STATUSES
from .._stats import DURATION_BUCKETS, percentile
from .._urls import async_url
from .._validate import check_schema_name
from ..admin_async import AsyncAdmin
from ..errors import InvalidArgument, PgQueueError, QueueNotFound
from ..types import JobInfo
from . import _queries
from ._live import POLL_INTERVAL, Hub
from ._security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SECURITY_HEADERS,
    Authenticate,
    Credentials,
    Csrf,
    same_origin,
)

HERE = Path(__file__).parent
# Every read of a page: JIT off (see Dashboard.rows) and a statement timeout, so that no
# page holds the database for long (a filter that reads too much is stopped, and says so).
_READ_SETTINGS = text(
    "SELECT pg_catalog.set_config('jit', 'off', true),"
    " pg_catalog.set_config('statement_timeout', :timeout, true)"
)
#: SQLSTATE query_canceled: a statement timeout.
_CANCELED = "57014"
#: Jobs per page of the jobs list.
PAGE_SIZE = 50
#: The verbs of the jobs page, and what they did (for messages and the audit log).
VERBS = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}


# --------------------------------------------------------------------------- formatting
def _age(value: timedelta | float | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f}ms"
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m {int(s % 60)}s"
    if s < 86400:
        return f"{sign}{int(s // 3600)}h {int(s % 3600 // 60)}m"
    return f"{sign}{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bound(seconds: float | None) -> str:
    """A duration bucket's upper bound: "≤ 20 ms", "≤ 2 s", "> 300 s"."""
    if seconds is None:
        return "—"
    if seconds == float("inf"):
        return f"> {DURATION_BUCKETS[-2]:g} s"
    if seconds < 1:
        return f"≤ {seconds * 1000:g} ms"
    return f"≤ {seconds:g} s"


def _count(value: int | None, cap: int = _queries.COUNT_CAP) -> str:
    """A capped count: ``cap`` or more shows as "cap+"."""
    if value is None:
        return ""
    if value >= cap:
        return f"{cap:,}+"
    return f"{value:,}"


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _chart(points: list[tuple[datetime, int, int]], now: datetime) -> dict[str, Any]:
    """Bars of completed and failed jobs per minute over the last hour, as SVG
    coordinates (the template draws them: numbers only, nothing to escape)."""
    width, height, minutes = 600, 120, 60
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    slots: list[tuple[int, int]] = [(0, 0)] * minutes
    for minute, completed, failed in points:
        i = int((minute - start).total_seconds() // 60)
        if 0 <= i < minutes:
            slots[i] = (slots[i][0] + int(completed), slots[i][1] + int(failed))
    top = max([c + f for c, f in slots] + [1])
    scale = 10 ** math.floor(math.log10(top)) if top >= 10 else 1
    top = math.ceil(top / scale) * scale
    bar = width / minutes
    bars = []
    for i, (completed, failed) in enumerate(slots):
        hc = completed / top * height
        hf = failed / top * height
        bars.append(
            {
                "x": round(i * bar, 2),
                "w": round(bar - 1, 2),
                "yc": round(height - hc, 2),
                "hc": round(hc, 2),
                "yf": round(height - hc - hf, 2),
                "hf": round(hf, 2),
                "minute": (start + timedelta(minutes=i)).strftime("%H:%M"),
                "completed": completed,
                "failed": failed,
            }
        )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "top": top,
        "completed": sum(c for c, _ in slots),
        "failed": sum(f for _, f in slots),
    }


# --------------------------------------------------------------------------- the app
class Dashboard:
    """What every request of one app shares: the engine, the admin, the settings."""

    def __init__(
        self,
        engine: AsyncEngine,
        owns_engine: bool,
        schema: str,
        *,
        actions: bool,
        credentials: Credentials,
        csrf: Csrf,
        live: bool,
        poll_interval: float,
        statement_timeout: float,
        title: str,
    ) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        self.schema = schema
        self.admin = AsyncAdmin(engine, schema=schema)
        self.q = _queries.queries(schema)
        self.actions = actions
        self.credentials = credentials
        self.csrf = csrf
        self.hub = Hub(engine, schema, listen=live)
        self.poll_interval = poll_interval
        self.statement_timeout = statement_timeout
        self._timeout = {"timeout": f"{max(1, round(statement_timeout * 1000))}ms"}
        self.title = title
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            age=_age, when=_when, count=_count, size=_size, pretty=_pretty, bound=_bound
        )

    async def close(self) -> None:
        await self.hub.close()
        if self.owns_engine:
            self.owns_engine = False
            await self.engine.dispose()

    # ------------------------------------------------------------ rendering
    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        root: str = request.scope.get("root_path", "")

        def url(path: str, **query: Any) -> str:
            pairs = [
                (k, item)
                for k, v in query.items()
                if v not in (None, "", [])
                for item in (v if isinstance(v, list | tuple) else [v])
            ]
            return root + path + ("?" + urlencode(pairs) if pairs else "")

        page: str = self.templates.get_template(name).render(
            request=request,
            url=url,
            title=self.title,
            schema=self.schema,
            actions=self.actions,
            operator=request.scope.get("pgqueue_operator"),
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf.token(request.scope["pgqueue_csrf_cookie"]),
            live=bool(request.scope.get("pgqueue_live_page", True)),
            **context,
        )
        return HTMLResponse(page, status_code=status_code)

    async def rows(self, statement: Any, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            # The pages' statements run subqueries per queue: their estimated cost (from
            # a small table's default estimate) crosses jit_above_cost, and compiling
            # them took 340 ms of a 420 ms overview at 1M jobs, for a 60 ms query.
            await conn.execute(_READ_SETTINGS, self._timeout)
            return list((await conn.execute(statement, params)).all())

    async def read(self, conn: Any) -> None:
        """Apply the reads' settings to ``conn`` (in its transaction)."""
        await conn.execute(_READ_SETTINGS, self._timeout)

    async def audit(self, actor: str, action: str, target: Mapping[str, Any], count: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                self.q.add_audit,
                {"b_actor": actor, "b_action": action, "b_target": dict(target), "b_count": count},
            )


def _dashboard(request: Request) -> Dashboard:
    d: Dashboard = request.app.state.pgqueue
    return d


# --------------------------------------------------------------------------- pages
async def overview(request: Request) -> Response:
    d = _dashboard(request)
    statement, _ = d.q.overview
    queues = await d.rows(statement, b_cap=_queries.OVERVIEW_CAP)
    rates = await d.rows(d.q.rates)
    now = (await d.rows(text("SELECT pg_catalog.now()")))[0][0]
    by_queue: dict[str, list[tuple[datetime, int, int]]] = {}
    for r in rates:
        by_queue.setdefault(r.queue, []).append((r.minute, r.completed, r.failed))
    charts = {q.name: _chart(by_queue.get(q.name, []), now) for q in queues}
    return d.render(
        request,
        "overview.html",
        queues=queues,
        charts=charts,
        statuses=_queries.HOT,
        cap=_queries.OVERVIEW_CAP,
    )


async def queue_page(request: Request) -> Response:
    d = _dashboard(request)
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
    chart = _chart([(r.minute, r.completed, r.failed) for r in rates if r.queue == name], now)
    return d.render(
        request,
        "queue.html",
        queue=found[0],
        entrypoints=entrypoints,
        durations=durations,
        queue_chart=chart,
        statuses=_queries.HOT,
        cap=_queries.COUNT_CAP,
    )


def _filters(params: Mapping[str, Any], statuses: list[str]) -> dict[str, Any]:
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
    d = _dashboard(request)
    params = request.query_params
    job_id = params.get("id", "").strip()
    if job_id:
        if not job_id.isdigit():
            return d.render(request, "error.html", 400, message=f"not a job id: {job_id!r}")
        return RedirectResponse(request.scope.get("root_path", "") + f"/jobs/{job_id}", 303)
    statuses = params.getlist("status")
    try:
        where = _filters(params, statuses)
        after = params.get("after")
        async with d.engine.connect() as conn:
            await d.read(conn)  # a filter that reads too much is stopped (statement_timeout)
            jobs = await d.admin.list_jobs(
                **where,
                after_id=int(after) if after and after.isdigit() else None,
                limit=PAGE_SIZE + 1,
                bind=conn,
            )
    except InvalidArgument as exc:
        return d.render(request, "error.html", 400, message=str(exc))
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
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
        done=params.get("done"),
        verbs=VERBS,
        back="/jobs" + ("?" + urlencode(kept) if kept else ""),
    )


async def job_page(request: Request) -> Response:
    d = _dashboard(request)
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
    return d.render(
        request,
        "job.html",
        job=job,
        lease=lease,
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
    d = _dashboard(request)
    groups = await d.rows(d.q.dead_groups)
    return d.render(request, "dead.html", groups=groups, done=request.query_params.get("done"))


async def workers_page(request: Request) -> Response:
    d = _dashboard(request)
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
    d = _dashboard(request)
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
    d = _dashboard(request)
    tables = await d.rows(_queries.TABLE_SIZES, schema=d.schema)
    indexes = await d.rows(_queries.INDEX_SIZES, schema=d.schema)
    holders = await d.rows(_queries.XMIN_HOLDERS)
    others = await d.rows(_queries.PREPARED_AND_SLOTS)
    archive = d.q.tables["pgqueue_archive"]
    queues = [q.name for q in await d.admin.list_queues()]
    oldest = []
    for name in queues:  # one index probe per queue: (queue, finished_at)
        found = await d.rows(
            select(func.pg_catalog.min(archive.c.finished_at)).where(archive.c.queue == name)
        )
        oldest.append((name, found[0][0]))
    version = (await d.rows(text("SHOW server_version")))[0][0]
    return d.render(
        request,
        "system.html",
        tables=tables,
        indexes=indexes,
        holders=holders,
        others=others,
        oldest=oldest,
        version=version,
    )


async def audit_page(request: Request) -> Response:
    d = _dashboard(request)
    before = request.query_params.get("before", "")
    entries = await d.rows(
        d.q.list_audit, b_before=int(before) if before.isdigit() else 2**63 - 1, b_limit=100
    )
    return d.render(request, "audit.html", entries=entries)


async def events(request: Request) -> Response:
    d = _dashboard(request)
    return StreamingResponse(
        d.hub.stream(request.is_disconnected, d.poll_interval),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},
    )


# --------------------------------------------------------------------------- actions
async def _action_form(request: Request) -> tuple[Dashboard, FormData, str]:
    """The form of a state-changing request, once it passed every check: actions on,
    an authenticated operator, a same-origin request with a valid CSRF token."""
    d = _dashboard(request)
    if not d.actions:
        raise HTTPException(403, "this dashboard is read-only (start it with actions enabled)")
    operator = request.scope.get("pgqueue_operator")
    if not operator:
        raise HTTPException(401, "actions need an authenticated operator")
    form = await request.form()
    token = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not same_origin(request) or not d.csrf.valid(
        cookie, token if isinstance(token, str) else None
    ):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    return d, form, operator


def _back(request: Request, path: str, **query: Any) -> Response:
    pairs = [(k, v) for k, v in query.items() if v not in (None, "")]
    root = request.scope.get("root_path", "")
    return RedirectResponse(root + path + ("?" + urlencode(pairs) if pairs else ""), 303)


async def queue_action(request: Request) -> Response:
    d, _form, operator = await _action_form(request)
    name = request.path_params["name"]
    verb = request.path_params["verb"]
    try:
        if verb == "pause":
            await d.admin.pause_queue(name)
        elif verb == "resume":
            await d.admin.resume_queue(name)
        else:
            raise HTTPException(404)
    except QueueNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    await d.audit(operator, f"{verb} queue", {"queue": name}, 0)
    return _back(request, f"/queues/{name}")


async def jobs_action(request: Request) -> Response:
    d, form, operator = await _action_form(request)
    verb = str(form.get("action") or "")
    if verb not in VERBS:
        return d.render(request, "error.html", 400, message=f"unknown action {verb!r}")
    by_filter = form.get("scope") == "filter"
    back = str(form.get("back") or "/jobs")
    if not re.match(r"^/(?![/\\])", back):  # a path of this app, never "//host" or "/\\host"
        back = "/jobs"
    try:
        if by_filter:
            where = _filters(form, [str(s) for s in form.getlist("status")])
            if all(v is None for v in where.values()):
                raise InvalidArgument("choose at least one filter before acting on every match")
            target: dict[str, Any] = {k: v for k, v in where.items() if v is not None}
            ids = None
            count_rows = await d.rows(_queries.count_matching(d.schema, where))
            count = int(count_rows[0][0])
        else:
            ids = [int(str(i)) for i in form.getlist("ids") if str(i).isdigit()]
            if not ids:
                raise InvalidArgument("select at least one job")
            target = {"ids": ids}
            count = len(ids)
        confirmed = form.get("confirm")
        if confirmed is None:
            return d.render(
                request,
                "confirm.html",
                verb=verb,
                count=count,
                target=target,
                form=[(k, v) for k, v in form.multi_items() if k != CSRF_FIELD],
                action_url="/jobs/action",
                cancel_url=back,
            )
        fn = {
            "retry": d.admin.retry_jobs,
            "cancel": d.admin.cancel_jobs,
            "delete": d.admin.delete_jobs,
        }[verb]
        done = await (fn(ids) if ids is not None else fn(**where))
    except InvalidArgument as exc:
        return d.render(request, "error.html", 400, message=str(exc))
    await d.audit(operator, f"{verb} jobs", target, len(done))
    message = f"{VERBS[verb]} {len(done)} of {count} job(s)"
    sep = "&" if "?" in back else "?"
    root = request.scope.get("root_path", "")
    return RedirectResponse(root + back + sep + urlencode({"done": message}), 303)


async def dead_requeue(request: Request) -> Response:
    d, form, operator = await _action_form(request)
    queue = str(form.get("queue") or "")
    fingerprint = str(form.get("fingerprint") or "")
    ids = [r[0] for r in await d.rows(d.q.dead_group_ids, b_queue=queue, b_fingerprint=fingerprint)]
    if form.get("confirm") is None:
        return d.render(
            request,
            "confirm.html",
            verb="retry",
            count=len(ids),
            target={"queue": queue, "fingerprint": fingerprint},
            form=[(k, v) for k, v in form.multi_items() if k != CSRF_FIELD],
            action_url="/dead/requeue",
            cancel_url="/dead",
        )
    done = await d.admin.retry_jobs(ids) if ids else []
    await d.audit(
        operator, "requeue dead group", {"queue": queue, "fingerprint": fingerprint}, len(done)
    )
    return _back(request, "/dead", done=f"requeued {len(done)} dead job(s) of {queue}")


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for e in (orig, getattr(orig, "__cause__", None)):
        code = getattr(e, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


async def _error(request: Request, exc: Exception) -> Response:
    d = _dashboard(request)
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    if isinstance(exc, DBAPIError):
        if _sqlstate(exc) == _CANCELED or "statement timeout" in str(exc):
            status = 503
            detail = (
                f"stopped after {d.statement_timeout:g} s (the dashboard's statement timeout): "
                "narrow the filter (a queue and a status read from an index)"
            )
        else:
            detail = "database error: " + (str(exc.orig or exc).strip().splitlines() or [""])[0]
    headers = {}
    if status == 401 and d.credentials.basic:
        headers["www-authenticate"] = 'Basic realm="pgqueue", charset="UTF-8"'
    if "pgqueue_csrf_cookie" not in request.scope:
        return Response(detail, status_code=status, headers=headers, media_type="text/plain")
    response = d.render(request, "error.html", status, message=detail)
    response.headers.update(headers)
    return response


# --------------------------------------------------------------------------- middleware
class _Guard:
    """Every request: the operator (or 401 when credentials are configured and none
    was given), the CSRF cookie, and the security headers."""

    def __init__(self, app: ASGIApp, dashboard: Callable[[], Dashboard]) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        d = self.dashboard()
        request = Request(scope)
        operator = await d.credentials.operator(request)
        scope["pgqueue_operator"] = operator
        cookie = request.cookies.get(CSRF_COOKIE)
        new_cookie = None
        if not cookie or len(cookie) < 32:
            cookie = new_cookie = Csrf.new_cookie()
        scope["pgqueue_csrf_cookie"] = cookie
        root = scope.get("root_path", "") or "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.encode() not in present:
                        headers.append((k.encode(), v.encode()))
                if new_cookie is not None:
                    c: SimpleCookie = SimpleCookie()
                    c[CSRF_COOKIE] = new_cookie
                    c[CSRF_COOKIE]["path"] = root
                    c[CSRF_COOKIE]["httponly"] = True
                    c[CSRF_COOKIE]["samesite"] = "Strict"
                    headers.append((b"set-cookie", c.output(header="").strip().encode()))
                message = {**message, "headers": headers}
            await send(message)

        path = scope.get("path", "")
        static = path.startswith(scope.get("root_path", "") + "/static/")
        if d.credentials.configured and operator is None and not static:
            hdrs = [(b"content-type", b"text/plain; charset=utf-8")]
            if d.credentials.basic:
                hdrs.append((b"www-authenticate", b'Basic realm="pgqueue", charset="UTF-8"'))
            await send_with_headers({"type": "http.response.start", "status": 401, "headers": hdrs})
            await send({"type": "http.response.body", "body": b"authentication required"})
            return
        await self.app(scope, receive, send_with_headers)


# --------------------------------------------------------------------------- create_app
def create_app(
    engine: AsyncEngine | Engine | str | URL,
    *,
    schema: str = "public",
    actions: bool = False,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    authenticate: Authenticate | None = None,
    secret: str | bytes | None = None,
    live: bool = True,
    poll_interval: float = POLL_INTERVAL,
    statement_timeout: float = 10.0,
    title: str = "pgqueue",
) -> Starlette:
    """The dashboard as an ASGI app: serve it (``pgqueue web``, any ASGI server) or mount
    it in a host app under a prefix.

    Read-only unless ``actions=True``; actions then need an operator, authenticated by
    ``token`` (``Authorization: Bearer``), ``username``/``password`` (HTTP Basic), or
    the host's ``authenticate(request) -> name | None``. Without any of them the
    credentials come from ``PGQUEUE_WEB_TOKEN``, ``PGQUEUE_WEB_USERNAME`` and
    ``PGQUEUE_WEB_PASSWORD``; once configured, every page needs them. ``secret`` signs
    CSRF tokens (default ``PGQUEUE_WEB_SECRET``, else random per process).
    ``live``: LISTEN for the pages' live updates (else they poll). ``statement_timeout``
    (seconds): a page's query that runs longer is stopped (the page says so).

    >>> from fastapi import FastAPI                                   # doctest: +SKIP
    >>> app = FastAPI()                                               # doctest: +SKIP
    >>> app.mount("/queues", create_app(engine, schema="jobs"))       # doctest: +SKIP
    """
    check_schema_name(schema)
    if token is None and username is None and authenticate is None:
        credentials = Credentials.from_env()
    else:
        credentials = Credentials(token, username, password, authenticate)
    if actions and not credentials.configured:
        raise InvalidArgument(
            "actions need authentication: set PGQUEUE_WEB_TOKEN, or PGQUEUE_WEB_USERNAME and "
            "PGQUEUE_WEB_PASSWORD (or pass token=, username=/password= or authenticate=)"
        )
    if not poll_interval > 0:
        raise InvalidArgument(f"poll_interval must be > 0, not {poll_interval!r}")
    if not statement_timeout > 0:
        raise InvalidArgument(f"statement_timeout must be > 0, not {statement_timeout!r}")
    owns = False
    if isinstance(engine, AsyncEngine):
        async_engine = engine
    else:
        if isinstance(engine, Engine):
            url: str | URL = engine.url
        else:
            url = engine
        async_engine = create_async_engine(async_url(url), pool_size=5, max_overflow=5)
        owns = True
    dashboard = Dashboard(
        async_engine,
        owns,
        schema,
        actions=actions,
        credentials=credentials,
        csrf=Csrf(secret),
        live=live,
        poll_interval=poll_interval,
        statement_timeout=statement_timeout,
        title=title,
    )
    routes = [
        Route("/", overview, name="overview"),
        Route("/queues/{name}", queue_page, name="queue"),
        Route("/queues/{name}/{verb}", queue_action, methods=["POST"]),
        Route("/jobs", jobs_page, name="jobs"),
        Route("/jobs/action", jobs_action, methods=["POST"]),
        Route("/jobs/{id:int}", job_page, name="job"),
        Route("/dead", dead_page, name="dead"),
        Route("/dead/requeue", dead_requeue, methods=["POST"]),
        Route("/workers", workers_page, name="workers"),
        Route("/schedules", schedules_page, name="schedules"),
        Route("/system", system_page, name="system"),
        Route("/audit", audit_page, name="audit"),
        Route("/events", events, name="events"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _error, PgQueueError: _error, DBAPIError: _error},
        lifespan=_lifespan(dashboard),
    )
    app.state.pgqueue = dashboard
    app.add_middleware(_Guard, dashboard=lambda: dashboard)
    return app


def _lifespan(dashboard: Dashboard) -> Callable[[Starlette], Any]:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dashboard.close()

    return lifespan
