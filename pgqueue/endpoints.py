"""``/metrics``, ``/healthz`` and ``/readyz``: served on a port, or mounted as ASGI.

* ``/metrics``: the Prometheus registry (``prometheus_client``'s default), in the text
  format: the worker metrics of every worker in this process and, if a
  :class:`~pgqueue.metrics.QueueCollector` is registered, the queue metrics.
* ``/healthz``: 200 while the worker's run loop runs and its last heartbeat is fresh
  (younger than three heartbeat intervals, at least 5 s, or ``max_age``), else 503:
  a liveness probe. An event loop blocked by a handler stops the heartbeat too.
* ``/readyz``: 200 if the database answers ``SELECT 1`` within 3 s, else 503.

::

    server = serve(9108, worker=worker)      # what `pgqueue run --metrics-port 9108` does
    ...
    server.close()

    app.mount("/pgqueue", asgi_app(worker=worker))   # FastAPI / Starlette
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from .metrics._client import require as _require_prometheus
from .worker import SyncWorker
from .worker_async import AsyncWorker

__all__ = ["Endpoints", "asgi_app", "serve"]

#: Seconds ``/readyz`` gives the database.
READY_TIMEOUT = 3.0

Response = tuple[int, str, bytes]
_TEXT = "text/plain; charset=utf-8"


class Endpoints:
    """What the three paths answer, whatever serves them.

    ``worker``: the worker whose liveness ``/healthz`` reports (without one it answers
    200 while the process serves). ``engine``: the database ``/readyz`` checks
    (default: the worker's). ``registry``: default ``prometheus_client.REGISTRY``.
    """

    def __init__(
        self,
        *,
        worker: SyncWorker | AsyncWorker | None = None,
        engine: Engine | AsyncEngine | None = None,
        registry: Any = None,
        max_age: float | None = None,
    ) -> None:
        _require_prometheus()
        from prometheus_client import REGISTRY

        self.worker = worker
        self.engine = engine if engine is not None else worker.engine if worker else None
        self.registry = registry if registry is not None else REGISTRY
        self.max_age = max_age

    def metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def healthz(self) -> Response:
        if self.worker is None:
            return 200, _TEXT, b"ok\n"
        live, why = self.worker._observer.health.live(self.max_age)
        return (200 if live else 503), _TEXT, f"{'ok' if live else 'unhealthy'}: {why}\n".encode()

    def readyz(self) -> Response:
        """Blocking: for a thread (``serve``); ASGI awaits :meth:`areadyz`."""
        if self.engine is None:
            return 200, _TEXT, b"ok: no database to check\n"
        try:
            if isinstance(self.engine, AsyncEngine):
                asyncio.run(asyncio.wait_for(_aping(self.engine, fresh=True), READY_TIMEOUT))
            else:
                _ping(self.engine)
        except Exception as exc:
            return _not_ready(exc)
        return 200, _TEXT, b"ok\n"

    async def areadyz(self) -> Response:
        if self.engine is None:
            return 200, _TEXT, b"ok: no database to check\n"
        try:
            if isinstance(self.engine, AsyncEngine):
                await asyncio.wait_for(_aping(self.engine, fresh=False), READY_TIMEOUT)
            else:
                await asyncio.to_thread(_ping, self.engine)
        except Exception as exc:
            return _not_ready(exc)
        return 200, _TEXT, b"ok\n"

    def route(self, path: str) -> Callable[[], Response] | None:
        return {"/metrics": self.metrics, "/healthz": self.healthz, "/readyz": self.readyz}.get(
            path.rstrip("/") or "/"
        )


def _not_ready(exc: BaseException) -> Response:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return 503, _TEXT, f"database unreachable: {first}\n".encode()


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def _aping(engine: AsyncEngine, *, fresh: bool) -> None:
    # From another thread's event loop the engine's pooled connections (tied to the
    # worker's loop) cannot be used: a connection of its own, thrown away.
    target = create_async_engine(engine.url, poolclass=NullPool) if fresh else engine
    try:
        async with target.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        if fresh:
            await target.dispose()


# --------------------------------------------------------------------------- a port
class Server:
    """The endpoints on a port, served by daemon threads until :meth:`close`."""

    def __init__(self, endpoints: Endpoints, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = endpoints.route(self.path.split("?", 1)[0])
                status, ctype, body = answer() if answer else (404, _TEXT, b"not found\n")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not worth a log line

        self.endpoints = endpoints
        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self.port: int = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="pgqueue-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def serve(
    port: int,
    *,
    host: str = "0.0.0.0",
    worker: SyncWorker | AsyncWorker | None = None,
    engine: Engine | AsyncEngine | None = None,
    registry: Any = None,
    max_age: float | None = None,
) -> Server:
    """Serve ``/metrics``, ``/healthz``, ``/readyz`` on ``port`` (0: any free port,
    see ``server.port``) from a daemon thread.

    >>> server = serve(9108, worker=worker)  # doctest: +SKIP
    """
    endpoints = Endpoints(worker=worker, engine=engine, registry=registry, max_age=max_age)
    return Server(endpoints, host, port)


# --------------------------------------------------------------------------- ASGI
ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def asgi_app(
    *,
    worker: SyncWorker | AsyncWorker | None = None,
    engine: Engine | AsyncEngine | None = None,
    registry: Any = None,
    max_age: float | None = None,
) -> ASGIApp:
    """The endpoints as a plain ASGI app, to mount in a host app:

    >>> app.mount("/pgqueue", asgi_app(worker=worker))  # doctest: +SKIP

    serves ``/pgqueue/metrics``, ``/pgqueue/healthz`` and ``/pgqueue/readyz``. The
    metrics are rendered on a thread (a registered ``QueueCollector`` reads the
    database with a blocking engine).
    """
    endpoints = Endpoints(worker=worker, engine=engine, registry=registry, max_age=max_age)

    async def app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted: the path under the mount point
            path = path[len(root) :]
        path = path.rstrip("/") or "/"
        status, ctype, body = 404, _TEXT, b"not found\n"
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
        elif path == "/metrics":
            status, ctype, body = await asyncio.to_thread(endpoints.metrics)
        elif path == "/healthz":
            status, ctype, body = endpoints.healthz()
        elif path == "/readyz":
            status, ctype, body = await endpoints.areadyz()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app
