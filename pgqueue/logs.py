"""Structured logs: one JSON object per line (``pgqueue run --log-format json``).

Every transition of a job is a record on the ``pgqueue.jobs`` logger (started and
completed at DEBUG, retried and cancelled at INFO, lost at WARNING, dead at ERROR);
a failed attempt is a WARNING on ``pgqueue.worker`` with its traceback. Each carries
the job's fields as attributes of the record (``extra``): ``event``, ``job_id``,
``queue``, ``entrypoint``, ``attempt``. :class:`JsonFormatter` writes them, with the
time, level, logger, message, traceback and, inside a span, its ``trace_id`` and
``span_id``::

    {"ts": "2026-12-03T18:40:01.123Z", "level": "WARNING", "logger": "pgqueue.worker",
     "message": "job 42 (send) attempt 1 failed: boom", "event": "failed", "job_id": 42,
     "queue": "emails", "entrypoint": "send", "attempt": 1, "exc_info": "Traceback ..."}

Use it in your own logging set-up (``handler.setFormatter(JsonFormatter())``) or call
:func:`configure`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

__all__ = ["JsonFormatter", "configure"]

#: A record's own attributes: everything else on it came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON, its ``extra`` fields included."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        _trace_ids(out)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


def _trace_ids(out: dict[str, Any]) -> None:
    try:
        from opentelemetry import trace
    except ImportError:
        return
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        out["trace_id"] = format(ctx.trace_id, "032x")
        out["span_id"] = format(ctx.span_id, "016x")


def configure(fmt: str = "text", level: int = logging.WARNING) -> None:
    """Log to stderr, as ``text`` (one readable line) or ``json`` (:class:`JsonFormatter`);
    replaces the root logger's handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
