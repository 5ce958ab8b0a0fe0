"""One function per scenario's fault. Each runs for the fault's whole duration and
records, in ``ctx.outcome``, the fault events (what a re-execution may be blamed on),
notes for the report, failures of checks specific to the fault, and pressure figures.

An :class:`Event` is a window ``[t0, t1]`` (``time.time()``) and, for a signal, the pid
it hit. A second execution of a job is *excused* by an event if the previous execution
started no later than ``t1`` (it was in flight during the fault), the next one started
no earlier than ``t0``, and, for a signal, the previous one ran in the process hit.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.support.procs import WorkerProcess
from tests.support.servers import RestartableServer

from .load import Producer
from .names import APP_PRESSURE, APP_PRODUCER, APP_RUNNER, APP_WORKER
from .profiles import Profile


@dataclass(frozen=True)
class Event:
    t0: float
    t1: float
    pid: int | None  # None: every connection / the whole database
    what: str


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    server: RestartableServer
    dsn: str
    workers: list[WorkerProcess]
    restart_worker: Callable[[int], WorkerProcess]  # start slot i again; waits until ready
    producer: Producer
    rate: float  # steady offered load (jobs/s)
    capacity: float  # measured completions/s of both workers
    profile: Profile
    outcome: Outcome = field(default_factory=Outcome)


def _connect(dsn: str, name: str = APP_RUNNER) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, application_name=name, connect_timeout=5)


def restart(ctx: Context) -> None:
    """PostgreSQL fast shutdown, down for ``restart_down`` seconds, started again."""
    t0 = time.time()
    ctx.server.stop("fast")
    stopped = time.time()
    time.sleep(ctx.profile.restart_down)
    ctx.server.start_again()
    t1 = time.time()
    ctx.outcome.events.append(Event(t0, t1, None, "restart"))
    ctx.outcome.notes.append(f"down {t1 - stopped:.1f}s")
    for w in ctx.workers:
        if not w.alive():
            ctx.outcome.failures.append(f"{w.name} exited during the outage")


def terminate(ctx: Context) -> None:
    """pg_terminate_backend of every worker and producer connection, twice a second."""
    end = time.time() + ctx.profile.terminate_for
    killed = rounds = 0
    with _connect(ctx.dsn) as conn:
        while time.time() < end:
            t0 = time.time()
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name IN (%s, %s) AND pid <> pg_backend_pid()",
                (APP_WORKER, APP_PRODUCER),
            ).fetchone()
            ctx.outcome.events.append(Event(t0, time.time(), None, "terminate"))
            killed += int(row[0]) if row else 0
            rounds += 1
            time.sleep(max(0.0, 0.5 - (time.time() - t0)))
    ctx.outcome.notes.append(f"{killed} backends terminated in {rounds} rounds")


def idle_conns(ctx: Context, count: int = 300) -> None:
    """``count`` idle connections held against max_connections for the fault's duration."""
    held: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(count):
            held.append(_connect(ctx.dsn, APP_PRESSURE))
        ctx.outcome.notes.append(f"{len(held)} idle connections held")
        time.sleep(ctx.profile.idle_conns_for)
    except psycopg.OperationalError as exc:
        ctx.outcome.failures.append(f"opened only {len(held)} of {count} idle connections: {exc}")
    finally:
        for c in held:
            c.close()


def _running_under(conn: psycopg.Connection[Any], locked_by: str | None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pgqueue_jobs WHERE status = 'running' AND locked_by = %s",
        (locked_by,),
    ).fetchone()
    return int(row[0]) if row else 0


def _locked_by(ctx: Context, worker: WorkerProcess) -> str | None:
    """The ``locked_by`` value of the jobs ``worker`` leases."""
    with _connect(ctx.dsn) as conn:
        row = conn.execute(
            "SELECT id, hostname FROM pgqueue_workers WHERE pid = %s AND kind = 'worker'"
            " ORDER BY id DESC LIMIT 1",
            (worker.pid,),
        ).fetchone()
    return None if row is None else f"{row[0]}@{row[1]}"


def _signal(victim: WorkerProcess, sig: int) -> float:
    """Send ``sig``; when (``time.time()``, the clock of fault events)."""
    at = time.time()
    victim.signal(sig)
    return at


def _when_busy(ctx: Context, victim: WorkerProcess, timeout: float = 10) -> int:
    """Wait (up to ``timeout``) until ``victim`` holds at least one running job, so the
    signal hits it mid-job; the number of jobs it holds then."""
    me = _locked_by(ctx, victim)
    deadline = time.time() + timeout
    with _connect(ctx.dsn) as conn:
        busy = _running_under(conn, me)
        while busy == 0 and time.time() < deadline:
            time.sleep(0.005)
            busy = _running_under(conn, me)
    return busy


def _kill_and_restart(ctx: Context, slot: int) -> int:
    """SIGKILL the worker in ``slot`` mid-job and start it again; the jobs it held."""
    victim = ctx.workers[slot]
    held = _when_busy(ctx, victim)
    t0 = _signal(victim, signal.SIGKILL)
    code = victim.wait(10)
    ctx.outcome.events.append(Event(t0, time.time(), victim.pid, f"SIGKILL {victim.name}"))
    if code != -signal.SIGKILL:
        ctx.outcome.failures.append(f"{victim.name}: exit {code} after SIGKILL")
    ctx.restart_worker(slot)
    return held


def kill_one(ctx: Context) -> None:
    """SIGKILL one of the two workers mid-job, then start it again."""
    held = _kill_and_restart(ctx, 0)
    ctx.outcome.notes.append(f"{held} jobs held at SIGKILL")


def kill_loop(ctx: Context) -> None:
    """SIGKILL a worker (alternating) every ``kill_period`` seconds, restart after each."""
    start = time.time()
    kills = held = 0
    while kills * ctx.profile.kill_period < ctx.profile.kill_loop_for:
        time.sleep(max(0.0, start + kills * ctx.profile.kill_period - time.time()))
        held += _kill_and_restart(ctx, kills % 2)
        kills += 1
    time.sleep(max(0.0, start + ctx.profile.kill_loop_for - time.time()))
    ctx.outcome.notes.append(f"{kills} SIGKILLs, {held} jobs held at them")


def sigterm(ctx: Context) -> None:
    """SIGTERM a worker while it runs jobs: it must exit 0 having finished or released
    every job it held (none left ``running`` under its name), then start it again."""
    slot = 1
    victim = ctx.workers[slot]
    me = _locked_by(ctx, victim)
    busy = _when_busy(ctx, victim)
    t0 = _signal(victim, signal.SIGTERM)
    code = victim.wait(ctx.profile.vt)
    ctx.outcome.events.append(Event(t0, time.time(), victim.pid, f"SIGTERM {victim.name}"))
    with _connect(ctx.dsn) as conn:
        left = _running_under(conn, me)
        row = conn.execute(
            "SELECT status FROM pgqueue_workers WHERE pid = %s AND kind = 'worker'"
            " ORDER BY id DESC LIMIT 1",
            (victim.pid,),
        ).fetchone()
    ctx.outcome.notes.append(f"{busy} jobs running at SIGTERM, exit {code}")
    if busy == 0:
        ctx.outcome.failures.append("the worker held no job when SIGTERM was sent")
    if code != 0:
        ctx.outcome.failures.append(f"{victim.name}: exit {code} after SIGTERM{victim.log(1500)}")
    if left:
        ctx.outcome.failures.append(f"{left} jobs left running under {me} after it exited")
    if row is None or row[0] != "stopped":
        ctx.outcome.failures.append(f"{victim.name} not marked stopped: {row}")
    ctx.restart_worker(slot)


def xmin(ctx: Context) -> None:
    """A REPEATABLE READ transaction that reads once and then idles, holding the xmin
    horizon back (vacuum cannot remove the dead tuples of finished jobs meanwhile)."""
    with psycopg.connect(ctx.dsn, application_name=APP_PRESSURE) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("SELECT count(*) FROM pgqueue_jobs").fetchone()
        time.sleep(ctx.profile.xmin_for)
        with _connect(ctx.dsn) as probe:
            row = probe.execute(
                "SELECT max(age(backend_xmin)) FROM pg_stat_activity WHERE application_name = %s",
                (APP_PRESSURE,),
            ).fetchone()
        conn.rollback()
    ctx.outcome.notes.append(f"xmin held, age {row[0] if row else '?'} xids at release")


def _overload(ctx: Context, seconds: float) -> None:
    offered = 1.5 * ctx.capacity
    ctx.producer.set_rate(offered)
    time.sleep(seconds)
    ctx.producer.set_rate(ctx.rate)
    ctx.outcome.notes.append(f"offered {offered:.0f}/s")
    ctx.outcome.figures["offered_rate"] = offered


def overload(ctx: Context) -> None:
    """Offered load 1.5x the measured capacity."""
    _overload(ctx, ctx.profile.overload_for)


def burst(ctx: Context) -> None:
    """A longer burst at 1.5x capacity."""
    _overload(ctx, ctx.profile.burst_for)


def rr_readers(ctx: Context, readers: int = 4, interval: float = 0.1) -> None:
    """Four readers, each scanning pgqueue_jobs in a REPEATABLE READ transaction of its
    own every 100 ms (a reporting query that competes with the hot table)."""
    stop = threading.Event()
    scans = [0] * readers
    errors: list[str] = []

    def reader(i: int) -> None:
        try:
            with psycopg.connect(ctx.dsn, application_name=APP_PRESSURE) as conn:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                while not stop.is_set():
                    t = time.monotonic()
                    conn.execute("SELECT count(*), max(id) FROM pgqueue_jobs").fetchone()
                    conn.commit()
                    scans[i] += 1
                    stop.wait(max(0.0, interval - (time.monotonic() - t)))
        except psycopg.Error as exc:
            errors.append(str(exc).splitlines()[0])

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(readers)]
    for t in threads:
        t.start()
    time.sleep(ctx.profile.rr_readers_for)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    ctx.outcome.notes.append(f"{sum(scans)} scans")
    if errors:
        ctx.outcome.failures.append(f"readers failed: {errors[:2]}")


FAULTS: dict[str, Callable[[Context], None]] = {
    "restart": restart,
    "terminate": terminate,
    "idle_conns": idle_conns,
    "kill_one": kill_one,
    "kill_loop": kill_loop,
    "sigterm": sigterm,
    "xmin": xmin,
    "overload": overload,
    "rr_readers": rr_readers,
    "burst": burst,
}
PRESSURE = {"xmin", "overload", "rr_readers", "burst"}
OVERLOADS = {"overload", "burst"}
