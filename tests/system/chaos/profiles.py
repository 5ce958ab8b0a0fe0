"""Timings of the two profiles. ``full`` uses the durations of docs/reliability.md;
``short`` scales every phase down so that all scenarios run in about seven minutes.

Why the visibility timeout is what it is: a worker extends the leases of its running
jobs every ``vt / 3``, so a database outage shorter than ``2 * vt / 3`` cannot expire
a lease that a live worker holds (full: 30 s outage < 40 s; short: 5 s < 10 s). A
SIGKILLed worker's jobs come back only when their lease expires, so the final drain
waits at least one ``vt`` plus slack after the last kill.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    vt: float  # workers' visibility_timeout (s)
    calibration_jobs: int  # backlog drained to measure capacity
    load: float  # steady offered load, as a fraction of the measured capacity
    warmup: float
    baseline: float
    observe_after: float  # at least this long after the fault ends (throughput "after")
    recovery_limit: float  # pass: back to >= 90% of baseline within this long
    restart_down: float
    terminate_for: float
    idle_conns_for: float
    kill_period: float
    kill_loop_for: float
    xmin_for: float
    overload_for: float
    rr_readers_for: float
    burst_for: float


FULL = Profile(
    name="full",
    vt=60.0,
    calibration_jobs=20_000,
    load=0.3,
    warmup=10.0,
    baseline=20.0,
    observe_after=15.0,
    recovery_limit=30.0,
    restart_down=30.0,
    terminate_for=60.0,
    idle_conns_for=60.0,
    kill_period=20.0,
    kill_loop_for=120.0,
    xmin_for=240.0,
    overload_for=240.0,
    rr_readers_for=120.0,
    burst_for=300.0,
)

SHORT = Profile(
    name="short",
    vt=15.0,
    calibration_jobs=4_000,
    load=0.3,
    warmup=3.0,
    baseline=5.0,
    observe_after=4.0,
    recovery_limit=30.0,
    restart_down=5.0,
    terminate_for=10.0,
    idle_conns_for=10.0,
    kill_period=5.0,
    kill_loop_for=15.0,
    xmin_for=20.0,
    overload_for=15.0,
    rr_readers_for=10.0,
    burst_for=20.0,
)

PROFILES = {p.name: p for p in (SHORT, FULL)}
