"""The pgqueue dashboard: queues, jobs, dead letters, workers, schedules and the
database's health in a browser, and the operator's verbs on them.

Serve it with ``pgqueue web`` or mount it in an ASGI app::

    from pgqueue.web import create_app
    app.mount("/pgqueue", create_app(engine, schema="public"))

Needs the ``web`` extra (``pip install 'pgqueue[web]'``: Starlette and Jinja2).
Read-only unless ``actions=True``; actions need an authenticated operator, a CSRF
token, and are recorded in ``pgqueue_audit``. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from ._app import create_app
from ._security import Credentials

__all__ = ["Credentials", "create_app"]
