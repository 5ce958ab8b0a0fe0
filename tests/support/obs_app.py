"""A worker for ``pgqueue run`` in the observability tests: queue ``obs_cli``, whose
handler fails a job whose payload is ``"bad"`` (not a test module)."""

from __future__ import annotations

from pgqueue import Message, SyncWorker


def worker(dsn: str, schema: str) -> SyncWorker:
    w = SyncWorker(dsn, ["obs_cli"], schema=schema, concurrency=2)

    @w.entrypoint("obs_cli")
    def handle(job: Message) -> None:
        if job.payload == "bad":
            raise ValueError("a bad payload")

    return w
