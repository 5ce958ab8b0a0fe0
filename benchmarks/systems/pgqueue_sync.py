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

from common import QUEUE, SETTLE, Churn, Paced, Probe, Timed, payload, payload_batches
from sqlalchemy import Engine, create_engine

from pgqueue import Message, SyncAdmin, SyncConsumer, SyncProducer, SyncWorker

from .base import System


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

    def _done(self, engine: Engine, producer: SyncProducer) -> None:
        producer.shutdown()
        engine.dispose()

    def enqueue_batches(self, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
        engine, producer = self._producer()
        with Timed(batches) as each:
            for batch in each:
                producer.batch_enqueue(batch)
        self._done(engine, producer)
        return each.elapsed

    def enqueue_each(self, payloads: Sequence[dict[str, Any]]) -> tuple[float, list[float]]:
        engine, producer = self._producer()
        with Timed(payloads) as each:
            for p in each:
                producer.enqueue(p)
        self._done(engine, producer)
        return each.elapsed, each.calls

    def fill(self, n: int, start: int = 0) -> None:
        engine, producer = self._producer()
        for batch in payload_batches(start, n, self.fill_batch):
            producer.batch_enqueue(batch)
        self._done(engine, producer)

    def produce_paced(self, n: int, interval: float, go: Any) -> list[float]:
        engine, producer = self._producer()
        go()
        paced = Paced(n, interval)
        for i, pause in paced:
            time.sleep(pause)
            producer.enqueue(payload(i))
        self._done(engine, producer)
        return paced.commits

    def _worker(self, engine: Engine, probe: Probe, pickup: bool) -> SyncWorker:
        worker = SyncWorker(engine, [QUEUE])

        if pickup:

            @worker.entrypoint(QUEUE)
            def handle_seq(job: Message) -> None:
                probe.hit(job.payload["seq"])

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
        jobs = [payload(i) for i in range(self.churn_batch)]
        churn = Churn(n, seconds)
        while churn.going():
            producer.batch_enqueue(jobs)
            while batch := churn.count(consumer.dequeue(self.churn_batch)):
                consumer.ack_batch(batch)
        consumer.shutdown()
        self._done(engine, producer)
        return churn.done
