"""Names the chaos runner's processes share: the queue, and the ``application_name`` of
each kind of connection, so that faults can pick their targets.

The ledger the workers write (``chaos_executions``, ``chaos_completions``) is in
tests/support/ledger.py.
"""

from __future__ import annotations

APP_WORKER = "pgq-chaos-worker"
APP_PRODUCER = "pgq-chaos-producer"
APP_RUNNER = "pgq-chaos-runner"
APP_PRESSURE = "pgq-chaos-pressure"

QUEUE = "chaos"
