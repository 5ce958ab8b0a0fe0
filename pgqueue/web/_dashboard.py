"""What every request of one dashboard app shares (engine, admin, templates, settings)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..admin_async import AsyncAdmin
from . import _queries
from ._format import fmt_age, fmt_bound, fmt_count, fmt_pretty, fmt_size, fmt_when
from ._live import Hub
from ._security import (
    CSRF_FIELD,
    Credentials,
    Csrf,
)

HERE = Path(__file__).parent
# Every read of a page: JIT off (see Dashboard.rows) and a statement timeout, so that no
# page holds the database for long (a filter that reads too much is stopped, and says so).
_READ_SETTINGS = text(
    "SELECT pg_catalog.set_config('jit', 'off', true),"
    " pg_catalog.set_config('statement_timeout', :timeout, true)"
)
#: SQLSTATE query_canceled: a statement timeout.
CANCELED = "57014"
#: Jobs per page of the jobs list.
PAGE_SIZE = 50
#: The verbs of the jobs page, and what they did (for messages and the audit log).
VERBS = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}


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
            age=fmt_age,
            when=fmt_when,
            count=fmt_count,
            size=fmt_size,
            pretty=fmt_pretty,
            bound=fmt_bound,
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


def dashboard_of(request: Request) -> Dashboard:
    d: Dashboard = request.app.state.pgqueue
    return d
