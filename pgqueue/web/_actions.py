"""The dashboard's actions (POST, authenticated, CSRF-checked, audited) and its error
page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.exc import DBAPIError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import InvalidArgument, QueueNotFound
from . import _queries
from ._dashboard import CANCELED, VERBS, Dashboard, dashboard_of
from ._pages import job_filters
from ._security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    same_origin,
)


async def _action_form(request: Request) -> tuple[Dashboard, FormData, str]:
    """The form of a state-changing request, once it passed every check: actions on,
    an authenticated operator, a same-origin request with a valid CSRF token."""
    d = dashboard_of(request)
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
            where = job_filters(form, [str(s) for s in form.getlist("status")])
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


async def workflow_action(request: Request) -> Response:
    """Cancel a run's live nodes, or retry its failed ones: confirmed with the count
    first (from the run's nodes now), then done by the admin and audited."""
    d, form, operator = await _action_form(request)
    run_id = request.path_params["id"]
    verb = request.path_params["verb"]
    if verb not in ("cancel", "retry"):
        raise HTTPException(404)
    counts = {r.status: int(r.n) for r in await d.rows(d.q.workflow_counts, b_workflow_id=run_id)}
    if not counts:
        raise HTTPException(404, f"no workflow run {run_id}")
    wanted = ("blocked", "queued", "scheduled", "running") if verb == "cancel" else WF_FAILED
    count = sum(n for s, n in counts.items() if s in wanted)
    if form.get("confirm") is None:
        return d.render(
            request,
            "confirm.html",
            verb=verb,
            count=count,
            target={"workflow": run_id},
            form=[(k, v) for k, v in form.multi_items() if k != CSRF_FIELD],
            action_url=f"/workflows/{run_id}/{verb}",
            cancel_url=f"/workflows/{run_id}",
        )
    if verb == "cancel":
        done = await d.admin.cancel_workflow(run_id)
    else:
        done = await d.admin.retry_workflow(run_id)
    await d.audit(operator, f"{verb} workflow", {"workflow": run_id}, len(done))
    message = f"{VERBS[verb]} {len(done)} node(s) of workflow {run_id}"
    return _back(request, f"/workflows/{run_id}", done=message)


#: A run's nodes that retry_workflow runs again.
WF_FAILED = ("dead", "cancelled", "deleted")


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for e in (orig, getattr(orig, "__cause__", None)):
        code = getattr(e, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


async def _error(request: Request, exc: Exception) -> Response:
    d = dashboard_of(request)
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    if isinstance(exc, DBAPIError):
        if _sqlstate(exc) == CANCELED or "statement timeout" in str(exc):
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
