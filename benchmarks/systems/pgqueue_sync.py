"""pgqueue, sync face: SyncProducer / SyncWorker / SyncConsumer on psycopg 3.

Driven as docs/workers.md says: an Engine whose pool holds ``concurrency`` plus a few
connections, ``SyncWorker(engine, [queue])`` with its defaults (concurrency 8 threads,
batch 8, LISTEN/NOTIFY), ``run(drain=True)``; stopped early with ``request_stop()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from common import QUEUE, Probe, Timer, clock, payload
from sqlalchemy import Engine, create_engine

from pgqueue import Message, SyncAdmin, SyncConsumer, SyncProducer, SyncWorker

from .base import System
from .pgqueue_async import CHURN_BATCH, FILL_BATCH, SETTLE


class PgqueueSync(System):
    name = "pgqueue-sync"
    label = "pgqueue SyncWorker / psycopg"
    driver = "psycopg"
    compare_to = "pgqueue-sync"
    settings = "SyncWorker defaults (8 threads, batch 8, LISTEN/NOTIFY), pool 13"
    reset_sql = "TRUNCATE pgqueue_jobs, pgqueue_archive"
    pending_sql = "SELECT count(*) FROM pgqueue_jobs"
    total_sql = "SELECT count(*) FROM pgqueue_jobs"
    concurrency = 8

    def engine(self, **kw: Any) -> Engine:
        return create_engine(self.dsn.sqlalchemy("psycopg"), **kw)

    def install(self) -> None:
        engine = self.engine()
        admin = SyncAdmin(engine)
        admin.install()
        admin.create_queue(QUEUE)
        engine.dispose()

    def _producer(self) -> tuple[Engine, SyncProducer]:
        engine = self.engine(pool_size=1, max_overflow=0)
        producer = SyncProducer(engine, QUEUE)
        producer.register()
        return engine, producer

    def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        engine, producer = self._producer()
        with Timer() as t:
            for batch in batches:
                producer.batch_enqueue(batch)
        producer.shutdown()
        engine.dispose()
        return t.elapsed

    def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        engine, producer = self._producer()
        calls = []
        with Timer() as t:
            for p in payloads:
                t0 = clock()
                producer.enqueue(p)
                calls.append(clock() - t0)
        producer.shutdown()
        engine.dispose()
        return t.elapsed, calls

    def fill(self, n: int, start: int = 0) -> None:
        engine, producer = self._producer()
        for lo in range(start, start + n, FILL_BATCH):
            hi = min(start + n, lo + FILL_BATCH)
            producer.batch_enqueue([payload(i) for i in range(lo, hi)])
        producer.shutdown()
        engine.dispose()

    def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        engine, producer = self._producer()
        go()
        commits = []
        start = clock()
        for i in range(n):
            pause = start + i * interval - clock()
            if pause > 0:
                time.sleep(pause)
            producer.enqueue(payload(i))
            commits.append(clock())
        producer.shutdown()
        engine.dispose()
        return commits

    def _worker(self, engine: Engine, probe: Probe, pickup: bool) -> SyncWorker:
        worker = SyncWorker(engine, [QUEUE])

        if pickup:

            @worker.entrypoint(QUEUE)
            def handle_seq(job: Message) -> None:
                probe.hit(job.payload["seq"])  # type: ignore[index,call-overload]

        else:

            @worker.entrypoint(QUEUE)
            def handle(job: Message) -> None:
                probe.hit()

        probe.on_target = worker.request_stop
        return worker

    def drain(self, probe: Probe) -> None:
        engine = self.engine(pool_size=self.concurrency + 5)
        worker = self._worker(engine, probe, pickup=False)
        probe.start()
        worker.run(drain=True)
        engine.dispose()

    def pickup(self, probe: Any) -> None:
        engine = self.engine(pool_size=self.concurrency + 5)
        worker = self._worker(engine, probe, pickup=True)
        thread = threading.Thread(target=worker.run, name="pgqueue-worker")
        thread.start()
        time.sleep(SETTLE)
        probe.go()
        probe.start()
        thread.join()
        engine.dispose()

    def churn(self, n: int, seconds: float) -> int:
        engine = self.engine(pool_size=2)
        producer = SyncProducer(engine, QUEUE)
        consumer = SyncConsumer(engine, QUEUE, listen=False)
        jobs = [payload(i) for i in range(CHURN_BATCH)]
        done, end = 0, clock() + seconds
        while done < n and clock() < end:
            producer.batch_enqueue(jobs)
            while batch := consumer.dequeue(CHURN_BATCH):
                consumer.ack_batch(batch)
                done += len(batch)
        producer.shutdown()
        consumer.shutdown()
        engine.dispose()
        return done
