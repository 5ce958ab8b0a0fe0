"""The dashboard's ASGI app: its routes, the request guard (operator, CSRF cookie,
security headers), and create_app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._urls import async_url
from .._validate import check_schema_name
from ..errors import InvalidArgument, PgQueueError
from ._actions import _error, dead_requeue, jobs_action, queue_action, workflow_action
from ._dashboard import HERE, Dashboard
from ._live import POLL_INTERVAL
from ._pages import (
    audit_page,
    dead_page,
    events,
    job_page,
    jobs_page,
    overview,
    queue_page,
    schedules_page,
    system_page,
    workers_page,
    workflow_page,
    workflows_page,
)
from ._security import (
    CSRF_COOKIE,
    SECURITY_HEADERS,
    Authenticate,
    Credentials,
    Csrf,
)


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
        Route("/workflows", workflows_page, name="workflows"),
        Route("/workflows/{id:int}", workflow_page, name="workflow"),
        Route("/workflows/{id:int}/{verb}", workflow_action, methods=["POST"]),
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
