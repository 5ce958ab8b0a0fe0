"""``pgqueue web``: the dashboard on uvicorn, bound to 127.0.0.1 unless told otherwise.

pgqueue web                                   # http://127.0.0.1:8089, read-only
PGQUEUE_WEB_USERNAME=ops PGQUEUE_WEB_PASSWORD=... pgqueue web --actions
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_USAGE, CliError, _dsn

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8089


def load() -> tuple[Any, Any]:
    """``create_app`` and ``uvicorn``, or a usage error naming the extra to install."""
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs the web extra: pip install 'pgqueue[web]' ({exc})", EXIT_USAGE
        ) from None
    return create_app, uvicorn


def cmd_web(args: argparse.Namespace) -> int:
    create_app, uvicorn = load()
    dsn = _dsn(args)
    app = create_app(dsn, schema=args.schema, actions=args.actions, live=not args.no_listen)
    dashboard = app.state.pgqueue
    if args.host not in ("127.0.0.1", "localhost", "::1") and not dashboard.credentials.configured:
        print(
            f"pgqueue web: warning: serving on {args.host} with no credentials: anyone who can "
            "reach it reads every job's payload (set PGQUEUE_WEB_USERNAME/PASSWORD or TOKEN)",
            file=sys.stderr,
        )
    mode = "actions enabled" if args.actions else "read-only"
    print(f"pgqueue dashboard on http://{args.host}:{args.port}/ ({mode})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
