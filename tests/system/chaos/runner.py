"""Orchestration: server, schema, workers, calibration, then each scenario's phases
(warm-up, baseline, fault, recovery, drain) and its verdict from the ledger."""

from __future__ import annotations

import bisect
import functools
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from pgqueue import SyncAdmin, SyncProducer
from tests.support.db import rows, scalar
from tests.support.ledger import chaos_metadata
from tests.support.procs import WorkerProcess
from tests.support.servers import RestartableServer

from .faults import FAULTS, OVERLOADS, PRESSURE, Context, Event, Outcome
from .load import Producer, Sampler
from .names import APP_RUNNER, QUEUE
from .profiles import Profile

#: The chaos worker (``pgqueue run`` it in processes of their own).
APP = "tests.system.chaos.app:worker"
RECOVERY_WINDOW = 2.0  # seconds: the rate after a fault is measured over windows this long
RECOVERY_SHARE = 0.9  # of the baseline rate


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    scenario: str
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    offered_rate: float = 0.0
    baseline_rate: float = 0.0
    enqueued: int = 0  # acknowledged
    unacknowledged: int = 0  # enqueues whose call raised
    unacknowledged_present: int = 0  # ... of which the job existed and was completed
    completed: int = 0  # distinct jobs with a completion row
    lost: int = 0
    completed_twice: int = 0
    executions: int = 0
    extra_executions: int = 0
    extra_at_fault: int = 0
    recovery_s: float | None = None
    peak_backlog: int = 0
    drained: bool = False
    drain_s: float = 0.0
    fault_s: float = 0.0
    throughput_during: float = 0.0
    throughput_after: float = 0.0
    dead_tuples_peak: int | None = None
    dead_tuples_end: int | None = None
    size_peak: int | None = None
    size_end: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)


class Chaos:
    def __init__(self, profile: Profile, face: str, rate: float | None, logs: Path | None) -> None:
        self.profile = profile
        self.face = face
        self.fixed_rate = rate
        self.logs = logs
        self.server = RestartableServer(max_connections=400)
        self.dsn = ""
        self.engine: Engine | None = None
        self.workers: list[WorkerProcess] = []
        self.generation = 0
        self.capacity = 0.0
        self.rate = 0.0
        self.producer: Producer | None = None
        self.sampler: Sampler | None = None

    # ------------------------------------------------------------------ setup
    def start(self) -> None:
        self.dsn = self.server.start()
        say(f"PostgreSQL up at {self.dsn} (max_connections=400)")
        self.engine = create_engine(
            make_url(self.dsn).set(drivername="postgresql+psycopg"),
            connect_args={"application_name": APP_RUNNER},
            pool_size=2,
            pool_pre_ping=True,
        )
        admin = SyncAdmin(self.engine)
        admin.install()
        # Retries come quickly (an outage is short) and never run out: a job that
        # dead-letters is counted lost, so max_attempts must not be what decides.
        admin.create_queue(
            QUEUE,
            max_attempts=1000,
            visibility_timeout=self.profile.vt,
            retry_backoff=0.1,
            retry_backoff_max=1.0,
        )
        chaos_metadata.create_all(self.engine)
        self.sampler = Sampler(self.dsn)
        self.sampler.start()
        self.workers = [self._spawn(i) for i in range(2)]
        for w in self.workers:
            w.registered(self.engine, 60)
        self.producer = Producer(self.dsn)
        self.producer.start()

    def _spawn(self, slot: int) -> WorkerProcess:
        self.generation += 1
        settings = {
            "PGQ_CHAOS_FACE": self.face,
            "PGQ_CHAOS_CONCURRENCY": "32",
            "PGQ_CHAOS_VT": str(self.profile.vt),
            "PGQ_CHAOS_SHUTDOWN_TIMEOUT": "10",
        }
        name = f"w{slot}-{self.generation}"
        return WorkerProcess(APP, self.dsn, name, self.server.tmp, env=settings)

    def restart_worker(self, slot: int) -> WorkerProcess:
        w = self._spawn(slot)
        self.workers[slot] = w
        assert self.engine is not None
        return w.registered(self.engine, 60)

    def close(self) -> None:
        """Stop everything this run started, each step whatever the others did."""
        steps: list[Callable[[], None]] = []
        if self.producer is not None:
            steps.append(self.producer.stop)
        steps += [functools.partial(w.stop, 20) for w in self.workers]
        if self.sampler is not None:
            steps.append(self.sampler.stop)
        if self.engine is not None:
            steps.append(self.engine.dispose)
        steps += [self._keep_logs, self.server.cleanup]
        for step in steps:
            try:
                step()
            except Exception as exc:  # go on: the server must be stopped regardless
                say(f"cleanup: {step!r} failed: {exc}")

    def _keep_logs(self) -> None:
        if self.logs is None or not self.server.tmp.exists():
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        for f in self.server.tmp.glob("*.log"):
            (self.logs / f.name).write_bytes(f.read_bytes())
        if self.server.pgdata.exists():
            (self.logs / "postgresql.log").write_bytes(self.server.log_path.read_bytes())

    # ------------------------------------------------------------------ queries
    def rows(self, sql: str, **params: Any) -> list[Any]:
        assert self.engine is not None
        return rows(self.engine, sql, **params)

    def scalar(self, sql: str, **params: Any) -> Any:
        assert self.engine is not None
        return scalar(self.engine, sql, **params)

    def completions_between(self, scenario: str, t0: float, t1: float) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM chaos_completions WHERE scenario = :s"
                " AND done >= to_timestamp(:t0) AND done < to_timestamp(:t1)",
                s=scenario,
                t0=t0,
                t1=t1,
            )
        )

    def completion_times(
        self, scenario: str, window: tuple[float, float] | None = None
    ) -> list[float]:
        """When each completion of ``scenario`` committed (``time.time()``), in order;
        only those within ``window`` (``[t0, t1)``) if given."""
        sql = "SELECT extract(epoch FROM done) FROM chaos_completions WHERE scenario = :s"
        params: dict[str, Any] = {"s": scenario}
        if window is not None:
            sql += " AND done >= to_timestamp(:t0) AND done < to_timestamp(:t1)"
            params.update(t0=window[0], t1=window[1])
        return [float(r[0]) for r in self.rows(sql + " ORDER BY done", **params)]

    def unfinished(self) -> int:
        """Jobs still to run: queued, scheduled or running (dead ones are not)."""
        return int(self.scalar("SELECT count(*) FROM pgqueue_jobs WHERE status <> 'dead'"))

    # ------------------------------------------------------------------ calibration
    def calibrate(self) -> None:
        """Measure the capacity; the steady load is a share of it."""
        self.capacity = self.measure_capacity("calibration")
        self.rate = self.fixed_rate or self.profile.load * self.capacity
        say(
            f"capacity {self.capacity:.0f} jobs/s ({self.profile.calibration_jobs} jobs,"
            f" 2 workers x 32, {self.face}); steady offered load {self.rate:.0f} jobs/s"
        )

    def measure_capacity(self, label: str) -> float:
        """Drain a backlog of ``calibration_jobs`` with both workers (nothing else
        enqueued meanwhile) and count completions per second between the 10th and the
        90th percentile of them."""
        n = self.profile.calibration_jobs
        assert self.engine is not None
        producer = SyncProducer(self.engine, QUEUE)
        for start in range(0, n, 1000):
            batch = range(start, min(n, start + 1000))
            producer.batch_enqueue([{"seq": -1 - i, "scenario": label} for i in batch])
        deadline = time.monotonic() + 60 + n / 50
        while self.unfinished() and time.monotonic() < deadline:
            time.sleep(0.5)
        times = self.completion_times(label)
        if len(times) < n:
            raise RuntimeError(f"{label}: {len(times)} of {n} jobs completed")
        lo, hi = int(0.1 * n), int(0.9 * n)
        return (hi - lo) / max(1e-6, times[hi] - times[lo])

    # ------------------------------------------------------------------ scenarios
    def run_scenario(self, name: str) -> Result:
        p = self.profile
        assert self.producer is not None and self.sampler is not None
        result = Result(name, offered_rate=self.rate)
        for slot, w in enumerate(self.workers):
            if not w.alive():
                result.failures.append(f"{w.name} had exited (code {w.popen.returncode})")
                self.restart_worker(slot)
        began = time.time()
        say(f"{name}: warm-up {p.warmup:.0f}s, baseline {p.baseline:.0f}s")
        self.producer.begin(name, self.rate)
        time.sleep(p.warmup)
        b0 = time.time()
        time.sleep(p.baseline)
        b1 = time.time()
        result.baseline_rate = self.completions_between(name, b0, b1) / (b1 - b0)
        if result.baseline_rate == 0:  # nothing to recover to: the verdict would be empty
            result.failures.append("no job completed during the baseline")
        elif result.baseline_rate < 0.8 * self.rate:
            result.notes.append(f"baseline below the offered {self.rate:.0f}/s")

        capacity = self.capacity
        if name in OVERLOADS:
            # The machine is shared: measure again just before offering 1.5x capacity,
            # so that the overload is one (the steady producer pauses meanwhile).
            self.producer.set_rate(0.0)
            capacity = self.measure_capacity(f"calibration-{name}")
            self.producer.set_rate(self.rate)
            result.notes.append(f"capacity now {capacity:.0f}/s")
        say(f"{name}: fault (baseline {result.baseline_rate:.0f}/s)")
        ctx = Context(
            self.server,
            self.dsn,
            self.workers,
            self.restart_worker,
            self.producer,
            self.rate,
            capacity,
            p,
            Outcome(),
        )
        f0 = time.time()
        try:
            FAULTS[name](ctx)
        except Exception as exc:  # a fault that could not be injected fails the scenario
            result.failures.append(f"fault raised {type(exc).__name__}: {exc}")
        f1 = time.time()
        result.fault_s = f1 - f0
        outcome = ctx.outcome

        say(f"{name}: recovery (fault lasted {f1 - f0:.0f}s)")
        observed_until = self._observe_recovery(name, result.baseline_rate, f1)
        self.producer.end()
        enq = self.producer.log[name]
        result.throughput_during = self.completions_between(name, f0, f1) / max(1e-6, f1 - f0)
        result.throughput_after = self.completions_between(name, f1, observed_until) / max(
            1e-6, observed_until - f1
        )
        result.recovery_s = self._recovery_time(name, result.baseline_rate, f1, observed_until)
        offered = outcome.figures.get("offered_rate")
        if offered and result.throughput_during >= 0.95 * offered:
            # Calibrated while the machine was busier than now: the load was no overload.
            result.notes.append("NOT overloaded: workers kept up with the offered load")

        say(f"{name}: drain")
        d0 = time.time()
        # The jobs of a SIGKILLed worker come back one visibility timeout after its last
        # heartbeat; then the backlog drains at the measured capacity.
        backlog = self.unfinished()
        timeout = p.vt + 30 + 2 * backlog / max(1.0, self.capacity)
        while time.time() - d0 < timeout:
            if self.unfinished() == 0:
                result.drained = True
                break
            time.sleep(0.5)
        result.drain_s = time.time() - d0
        time.sleep(1.0)  # the sampler's last look, after the drain

        self._verdict(result, enq.acked, len(enq.unacked), outcome, began, f0)
        for slot, w in enumerate(self.workers):
            if not w.alive():
                result.failures.append(f"{w.name} exited (code {w.popen.returncode}){w.log(1500)}")
                self.restart_worker(slot)
        result.passed = not result.failures
        return result

    def _observe_recovery(self, name: str, baseline: float, f1: float) -> float:
        """Watch the completion rate after the fault until it is back (and at least
        ``observe_after`` s), or for ``recovery_limit`` + a window. Returns the end."""
        p = self.profile
        limit = f1 + p.recovery_limit + 2 * RECOVERY_WINDOW
        back = None
        while time.time() < limit:
            time.sleep(0.5)
            now = time.time()
            if back is None and now - f1 >= RECOVERY_WINDOW:
                try:
                    done = self.completions_between(name, now - RECOVERY_WINDOW, now)
                except Exception:  # the database may still be coming back
                    continue
                if done >= RECOVERY_SHARE * baseline * RECOVERY_WINDOW:
                    back = now
            if back is not None and now - f1 >= p.observe_after:
                break
        return time.time()

    def _recovery_time(self, name: str, baseline: float, f1: float, until: float) -> float | None:
        """Seconds from the fault's end to the start of the first window ``(s, s + W]``
        (W = RECOVERY_WINDOW, entirely after the fault) holding >= 90% of the baseline
        rate's completions; None if there is none before ``until``."""
        times = self.completion_times(name, (f1, until))
        need = RECOVERY_SHARE * baseline * RECOVERY_WINDOW
        # The count in a window changes only where its end reaches a completion, so the
        # earliest qualifying start is the fault's end or a completion time minus W.
        starts = [f1] + [t - RECOVERY_WINDOW for t in times if t - RECOVERY_WINDOW > f1]
        for start in starts:
            end = start + RECOVERY_WINDOW
            if end > until:
                break
            inside = bisect.bisect_right(times, end) - bisect.bisect_right(times, start)
            if inside >= need:
                return start - f1
        return None

    def _verdict(
        self,
        r: Result,
        acked: dict[int, int],
        unacked: int,
        outcome: Outcome,
        began: float,
        f0: float,
    ) -> None:
        p = self.profile
        r.failures += outcome.failures
        r.notes += outcome.notes
        r.figures = outcome.figures
        r.enqueued, r.unacknowledged = len(acked), unacked
        done = {
            int(job): int(n)
            for job, n in self.rows(
                "SELECT job_id, count(*) FROM chaos_completions WHERE scenario = :s"
                " GROUP BY job_id",
                s=r.scenario,
            )
        }
        r.completed = len(done)
        r.completed_twice = sum(1 for n in done.values() if n > 1)
        lost = [job for job in acked if job not in done]
        r.lost = len(lost)
        r.unacknowledged_present = sum(1 for job in done if job not in acked)
        r.executions = int(
            self.scalar("SELECT count(*) FROM chaos_executions WHERE scenario = :s", s=r.scenario)
        )
        repeated = self.rows(
            "SELECT job_id, pid, extract(epoch FROM started) FROM chaos_executions"
            " WHERE scenario = :s AND job_id IN (SELECT job_id FROM chaos_executions"
            " WHERE scenario = :s GROUP BY job_id HAVING count(*) > 1)"
            " ORDER BY job_id, started",
            s=r.scenario,
        )
        unexcused: list[int] = []
        for k in range(1, len(repeated)):
            prev, cur = repeated[k - 1], repeated[k]
            if prev[0] != cur[0]:
                continue
            r.extra_executions += 1
            if excused(outcome.events, int(prev[1]), float(prev[2]), float(cur[2])):
                r.extra_at_fault += 1
            else:
                unexcused.append(int(cur[0]))
        samples = self.sampler.between(began, time.time()) if self.sampler else []
        r.peak_backlog = max((s.backlog for s in samples), default=0)
        pressure = [s for s in samples if s.at >= f0]
        if r.scenario in PRESSURE and pressure:
            r.dead_tuples_peak = max(s.dead_tuples for s in pressure)
            r.dead_tuples_end = pressure[-1].dead_tuples
            r.size_peak = max(s.size for s in pressure)
            r.size_end = pressure[-1].size

        if r.lost:
            dead = self.scalar("SELECT count(*) FROM pgqueue_jobs WHERE status = 'dead'")
            r.failures.append(
                f"{r.lost} acknowledged jobs never completed ({dead} dead): {lost[:5]}"
            )
        if r.completed_twice:
            twice = [job for job, n in done.items() if n > 1][:5]
            r.failures.append(f"{r.completed_twice} jobs completed more than once: {twice}")
        if unexcused:
            r.failures.append(
                f"{len(unexcused)} re-executions not explained by a fault: {unexcused[:5]}"
            )
        if r.recovery_s is None or r.recovery_s > p.recovery_limit:
            r.failures.append(
                f"completion rate not back to {RECOVERY_SHARE:.0%} of baseline within"
                f" {p.recovery_limit:.0f}s"
            )
        if not r.drained:
            r.failures.append(f"backlog not drained after {r.drain_s:.0f}s")


def excused(events: Sequence[Event], pid: int, prev_started: float, next_started: float) -> bool:
    """A re-execution is explained by a fault that the previous execution was in flight
    for (it started no later than the fault's end; the next one started after the
    fault began) and, for a signal, that hit the process running it."""
    return any(
        prev_started <= e.t1 and next_started >= e.t0 and (e.pid is None or e.pid == pid)
        for e in events
    )


def run(
    profile: Profile,
    scenarios: Sequence[str],
    face: str,
    rate: float | None,
    logs: Path | None,
) -> tuple[list[Result], dict[str, Any]]:
    chaos = Chaos(profile, face, rate, logs)
    results: list[Result] = []
    started = time.monotonic()
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    try:
        chaos.start()
        chaos.calibrate()
        for name in scenarios:
            result = chaos.run_scenario(name)
            verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.failures)
            say(f"{name}: {verdict}")
            results.append(result)
    finally:
        chaos.close()
        signal.signal(signal.SIGTERM, previous)
    info = {
        "profile": profile.name,
        "face": face,
        "capacity": round(chaos.capacity, 1),
        "offered_rate": round(chaos.rate, 1),
        "visibility_timeout": profile.vt,
        "total_s": round(time.monotonic() - started, 1),
    }
    return results, info
