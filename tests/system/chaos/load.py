"""The steady producer and the sampler, each a thread of the runner process.

:class:`Producer` enqueues jobs at a fixed rate with ``SyncProducer.batch_enqueue``
(one statement and one commit per tick), each job carrying a unique sequence number.
A batch whose commit returned is *acknowledged*: its job ids are recorded. A batch whose
call raised is *unacknowledged*: its jobs may or may not exist. The producer survives
outages by retrying with capped, jittered exponential backoff; the load offered while
the database is away is dropped, as a client whose request failed would see it, and
the fixed rate resumes from the moment enqueues succeed again (no catch-up burst).

:class:`Sampler` records the backlog (rows of ``pgqueue_jobs``), its dead tuples and
its size twice a second.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pgqueue import SyncProducer

from .names import APP_PRODUCER, APP_RUNNER, QUEUE


@dataclass
class Enqueued:
    """What the producer did for one scenario."""

    acked: dict[int, int] = field(default_factory=dict)  # job id -> seq
    unacked: list[int] = field(default_factory=list)  # seqs of batches that raised
    failures: int = 0  # enqueue calls that raised


class Producer(threading.Thread):
    TICK = 0.05

    def __init__(self, dsn: str) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self._engine = create_engine(
            make_url(dsn).set(drivername="postgresql+psycopg"),
            connect_args={"application_name": APP_PRODUCER},
            pool_size=2,
            pool_pre_ping=True,
        )
        self._producer = SyncProducer(self._engine, QUEUE)
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._rate = 0.0
        self._scenario: str | None = None
        self._seq = 0
        self.log: dict[str, Enqueued] = {}

    def begin(self, scenario: str, rate: float) -> None:
        with self._lock:
            self.log.setdefault(scenario, Enqueued())
            self._scenario, self._rate = scenario, rate

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._rate = rate

    def end(self) -> None:
        """Stop enqueuing (the call in flight, if any, finishes first)."""
        with self._lock:
            self._scenario, self._rate = None, 0.0
        time.sleep(2 * self.TICK)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self._engine.dispose()

    def run(self) -> None:
        owed = 0.0
        last = time.monotonic()
        failures_in_a_row = 0
        while not self._halt.is_set():
            now = time.monotonic()
            with self._lock:
                scenario, rate = self._scenario, self._rate
            owed += rate * (now - last) if scenario else 0.0
            last = now
            count = int(owed)
            if scenario is None or count == 0:
                self._halt.wait(self.TICK)
                continue
            owed -= count
            first = self._seq
            self._seq += count
            seqs = range(first, first + count)
            record = self.log[scenario]
            try:
                messages = self._producer.batch_enqueue(
                    [{"seq": s, "scenario": scenario} for s in seqs]
                )
            except Exception:  # any failure: unacknowledged, back off, go on
                record.unacked.extend(seqs)
                record.failures += 1
                delay = min(2.0, 0.05 * 2**failures_in_a_row) * random.uniform(0.5, 1.0)
                failures_in_a_row += 1
                self._halt.wait(delay)
                owed, last = 0.0, time.monotonic()  # the load offered meanwhile is dropped
                continue
            failures_in_a_row = 0
            for seq, m in zip(seqs, messages, strict=True):
                record.acked[m.id] = seq
            self._halt.wait(max(0.0, self.TICK - (time.monotonic() - now)))


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    backlog: int  # rows in pgqueue_jobs (queued, scheduled, running, dead)
    dead_tuples: int
    size: int  # pg_total_relation_size, bytes


class Sampler(threading.Thread):
    INTERVAL = 0.5
    QUERY = (
        "SELECT (SELECT count(*) FROM pgqueue_jobs), s.n_dead_tup,"
        " pg_total_relation_size('pgqueue_jobs')"
        " FROM pg_stat_user_tables s WHERE s.relname = 'pgqueue_jobs'"
    )

    def __init__(self, dsn: str) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self._dsn = dsn
        self._halt = threading.Event()
        self.samples: list[Sample] = []

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.at <= end]

    def run(self) -> None:
        conn: psycopg.Connection[tuple[int, int, int]] | None = None
        while not self._halt.wait(self.INTERVAL):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self._dsn, autocommit=True, application_name=APP_RUNNER, connect_timeout=2
                    )
                row = conn.execute(self.QUERY).fetchone()
                if row is not None:
                    self.samples.append(Sample(time.time(), int(row[0]), int(row[1]), int(row[2])))
            except psycopg.Error:  # the database is down (a scenario did it): try later
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
