"""The ``pgqueue`` command end to end: ``python -m pgqueue ...`` in subprocesses.

Hand-written. Each test runs the real command against the test server (``--dsn``
from the harness, ``--schema pgq_test``) and checks its exit code, its output, and
the database in SQL. Error cases run in parallel (each is a fresh interpreter).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from pgqueue import SyncAdmin, SyncConsumer, SyncProducer, SyncWorker, Workflow
from tests.support.db import SCHEMA, make_sync_engine, rows, scalar
from tests.support.ledger import fresh, worker_ledger
from tests.support.procs import WORKER_APP, Command, Result

CLI_SCHEMA = "pgq_cli"

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def engine(sync_engine: Engine) -> Engine:
    return sync_engine


def ok(dsn: str | None, *args: str, **options: Any) -> str:
    """Run a command that must succeed; its stdout."""
    r = Command(args, dsn=dsn, **options).result()
    assert r.code == 0, f"pgqueue {args} exited {r.code}\n{r.out}\n{r.err}"
    return r.out


def together(dsn: str, *commands: Sequence[str], **options: Any) -> list[Result]:
    """Run independent commands at the same time (each is a fresh interpreter); with
    ``envs=``, each with its own environment (and ``dsn_for=`` as their --dsn)."""
    envs = options.pop("envs", None)
    if envs is not None:
        dsn_for = options.pop("dsn_for")
        started = [
            Command(args, dsn=dsn_for, schema=None, env=env, **options)
            for args, env in zip(commands, envs, strict=True)
        ]
    else:
        started = [Command(args, dsn=dsn, **options) for args in commands]
    return [c.result() for c in started]


# --------------------------------------------------------------------------- schema
def test_install_is_idempotent_and_uninstall_drops_the_tables(dsn: str, engine: Engine) -> None:
    def tables() -> set[str]:
        found = rows(
            engine,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :s",
            s=CLI_SCHEMA,
        )
        return {r[0] for r in found}

    rows(engine, f"DROP SCHEMA IF EXISTS {CLI_SCHEMA} CASCADE")
    try:
        out = ok(dsn, "install", schema=CLI_SCHEMA)
        assert f"installed (up to date) in schema {CLI_SCHEMA!r}" in out
        installed = tables()
        assert {"pgqueue_jobs", "pgqueue_queues", "pgqueue_workers"} <= installed
        SyncAdmin(engine, schema=CLI_SCHEMA).create_queue("kept")
        SyncProducer(engine, "kept", schema=CLI_SCHEMA).enqueue({"n": 1})
        ok(dsn, "install", schema=CLI_SCHEMA)  # again: nothing changes, nothing is lost
        assert tables() == installed
        assert scalar(engine, f"SELECT count(*) FROM {CLI_SCHEMA}.pgqueue_jobs") == 1
        ok(dsn, "uninstall", "--yes", schema=CLI_SCHEMA)
        assert not {t for t in tables() if t.startswith("pgqueue_") and "version" not in t}
    finally:
        rows(engine, f"DROP SCHEMA IF EXISTS {CLI_SCHEMA} CASCADE")


# --------------------------------------------------------------------------- queues
def test_queue_create_list_pause_resume_purge_delete(dsn: str, engine: Engine) -> None:
    created = together(
        dsn,
        ["queue", "create", "tasks", "--max-attempts", "7", "--visibility-timeout", "12.5"],
        ["queue", "create", "kept", "--archive"],
    )
    assert [(r.code, r.out.strip()) for r in created] == [
        (0, "created queue 'tasks'"),
        (0, "created queue 'kept'"),
    ]
    settings = rows(
        engine, "SELECT name, max_attempts, visibility_timeout, archive FROM pgqueue_queues"
    )
    assert sorted(tuple(r) for r in settings) == [
        ("kept", 5, 30.0, True),
        ("tasks", 7, 12.5, False),
    ]

    SyncProducer(engine, "tasks", schema=SCHEMA).batch_enqueue([{"n": i} for i in range(3)])
    again, paused = together(dsn, ["queue", "create", "tasks"], ["queue", "pause", "kept"])
    assert again.code == 1 and "already exists" in again.err
    assert (paused.code, paused.out.strip()) == (0, "paused queue 'kept'")
    assert scalar(engine, "SELECT paused FROM pgqueue_queues WHERE name = 'kept'") is True

    listing = ok(dsn, "queue", "list").splitlines()
    assert listing[0].split() == [
        "queue",
        "state",
        "ready",
        "scheduled",
        "running",
        "dead",
        "max_att",
        "vt_s",
    ]
    assert [line.split() for line in listing[2:]] == [
        ["kept", "paused", "0", "0", "0", "0", "5", "30.0"],
        ["tasks", "active", "3", "0", "0", "0", "7", "12.5"],
    ]

    resumed, purged = together(dsn, ["queue", "resume", "kept"], ["queue", "purge", "tasks"])
    assert (resumed.code, resumed.out.strip()) == (0, "resumed queue 'kept'")
    assert (purged.code, purged.out.strip()) == (0, "purged 3 jobs from 'tasks'")
    assert scalar(engine, "SELECT paused FROM pgqueue_queues WHERE name = 'kept'") is False
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 0

    assert ok(dsn, "queue", "delete", "kept").strip() == "deleted queue 'kept'"
    assert [r[0] for r in rows(engine, "SELECT name FROM pgqueue_queues")] == ["tasks"]


# --------------------------------------------------------------------------- jobs
def test_enqueue_from_an_argument_and_from_stdin(dsn: str, engine: Engine) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    lines = "".join(f'{{"n": {i}}}\n' + ("\n" if i % 1000 == 0 else "") for i in range(3000))
    one, many = (
        Command(
            [
                "enqueue",
                "tasks",
                '{"to": "a@example.org"}',
                "--entrypoint",
                "email",
                "--priority",
                "3",
                "--delay",
                "60",
            ],
            dsn=dsn,
        ),
        Command(["enqueue", "tasks", "--batch-size", "700"], dsn=dsn, stdin=lines),
    )
    r = one.result()
    assert (r.code, r.out.strip()) == (0, "enqueued 1 job(s) on 'tasks'"), r.err
    r = many.result()
    assert r.code == 0 and "enqueued 3000 job(s) on 'tasks'" in r.out, r.err

    (job,) = rows(
        engine,
        "SELECT payload->>'to', entrypoint, priority, status,"
        " extract(epoch FROM available_at - enqueued_at) FROM pgqueue_jobs"
        " WHERE entrypoint = 'email'",
    )
    assert tuple(job[:4]) == ("a@example.org", "email", 3, "scheduled")
    assert 59.9 < float(job[4]) <= 60.1
    total, distinct, lo, hi, statuses = rows(
        engine,
        "SELECT count(*), count(DISTINCT payload->>'n'), min((payload->>'n')::int),"
        " max((payload->>'n')::int), array_agg(DISTINCT status) FROM pgqueue_jobs"
        " WHERE entrypoint = 'tasks'",
    )[0]
    assert (total, distinct, lo, hi, statuses) == (3000, 3000, 0, 2999, ["queued"])


def test_dead_list_and_requeue(dsn: str, engine: Engine) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks", max_attempts=1)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    ids = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(3)], entrypoint="e")]
    consumer = SyncConsumer(engine, "tasks", schema=SCHEMA, listen=False)
    for m in consumer.dequeue(batch_size=3):
        assert consumer.nack(m, error=f"boom {m.payload['n']}")
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'dead'") == 3

    lines = ok(dsn, "dead", "list", "tasks").splitlines()
    assert lines[0].split() == ["id", "entrypoint", "attempts", "last_error"]
    assert [line.strip().split(maxsplit=3) for line in lines[2:]] == [
        [str(i), "e", "1", f"boom {n}"] for n, i in enumerate(ids)
    ]

    out = ok(dsn, "dead", "requeue", "tasks", "--id", str(ids[1]))
    assert out.strip() == "requeued 1 dead job(s) on 'tasks'"
    assert rows(engine, "SELECT status, attempts FROM pgqueue_jobs WHERE id = :id", id=ids[1]) == [
        ("queued", 0)
    ]
    assert ok(dsn, "dead", "requeue", "tasks").strip() == "requeued 2 dead job(s) on 'tasks'"
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'queued'") == 3

    # Two dead jobs sharing a dedupe key: one is requeued, the other reported, not an error.
    keyed = []
    for _ in range(2):  # one live job per key: dead before the next is enqueued
        keyed.append(producer.enqueue({}, entrypoint="e", dedupe_key="k"))
        rows(engine, "UPDATE pgqueue_jobs SET status = 'dead' WHERE id = :id", id=keyed[-1].id)
    lines = ok(dsn, "dead", "requeue", "tasks").splitlines()
    assert lines == [
        "requeued 1 dead job(s) on 'tasks'",
        f"  left dead: {keyed[0].id} (dedupe key 'k' is held by job {keyed[1].id})",
    ]
    report = json.loads(ok(dsn, "dead", "requeue", "tasks", "--json"))
    assert report == {
        "requeued": [],
        "held_back": [{"id": keyed[0].id, "dedupe_key": "k", "held_by": keyed[1].id}],
    }


def test_stats_once_shows_queues_and_workers(dsn: str, engine: Engine) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    producer.batch_enqueue([{}, {}])
    producer.shutdown()
    worker = SyncWorker(engine, ["tasks"], schema=SCHEMA, hostname="stats-host", port=8123)
    info = worker.register()
    out = ok(dsn, "stats", "--once")
    assert out.startswith("pgqueue stats  ")
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert table["tasks"][:7] == ["tasks", "active", "2", "0", "0", "0", "0"]
    assert table[str(info.id)][:7] == [
        str(info.id),
        "worker",
        "tasks",
        "stats-host",
        "8123",
        str(os.getpid()),
        "ready",
    ]
    worker.shutdown()


def test_stats_marks_estimated_counts_and_counts_exactly_on_request(
    dsn: str, engine: Engine
) -> None:
    """Past the exact-count cap (1,000) a count is estimated (``~N``, ``estimated`` in
    JSON); ``--exact`` counts every job."""
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    rows(
        engine,
        "INSERT INTO pgqueue_jobs (queue, entrypoint, payload)"
        " SELECT 'tasks', 'e', '{}' FROM generate_series(1, 1500)",
    )
    rows(engine, "ANALYZE pgqueue_jobs")
    estimated, exact, listed = (
        r.out
        for r in together(
            dsn, ["stats", "--json"], ["stats", "--json", "--exact"], ["queue", "list", "--exact"]
        )
    )
    (queue,) = json.loads(estimated)["queues"]
    assert queue["metrics"]["estimated"] == ["ready"] and queue["metrics"]["ready"] >= 1000
    (queue,) = json.loads(exact)["queues"]
    assert (queue["metrics"]["estimated"], queue["metrics"]["ready"]) == ([], 1500)
    assert "1500" in listed and "~" not in listed
    assert "~" in ok(dsn, "stats", "--once")


def test_json_on_stats_dead_workers_and_schedules(dsn: str, engine: Engine) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks", max_attempts=1)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    producer.batch_enqueue([{"n": 1}, {"n": 2}])
    consumer = SyncConsumer(engine, "tasks", schema=SCHEMA, listen=False)
    (m,) = consumer.dequeue()
    consumer.nack(m, error="boom")
    worker = SyncWorker(engine, ["tasks"], schema=SCHEMA, hostname="json-host")
    info = worker.register()
    rows(
        engine,
        "INSERT INTO pgqueue_schedules (name, cron, queue, entrypoint, last_tick)"
        " VALUES ('nightly', '0 3 * * *', 'tasks', 'tick', '2026-12-03T03:00:00Z')",
    )
    stats, dead, workers, schedules = (
        json.loads(r.out)
        for r in together(
            dsn,
            ["stats", "--json"],
            ["dead", "list", "tasks", "--json"],
            ["workers", "--json"],
            ["schedules", "--json"],
        )
    )
    (queue,) = stats["queues"]
    assert queue["queue"]["name"] == "tasks" and queue["metrics"]["ready"] == 1
    assert queue["metrics"]["dead"] == 1
    assert [w["id"] for w in stats["workers"]] == [info.id]
    assert [(d["id"], d["last_error"]) for d in dead] == [(m.id, "boom")]
    assert [(w["hostname"], w["entrypoints"]) for w in workers] == [("json-host", [])]
    (nightly,) = schedules
    assert nightly["cron"] == "0 3 * * *" and nightly["next_tick"].startswith("2026-12-04T03:00")
    text_out = ok(dsn, "schedules")
    assert "nightly" in text_out and "2026-12-04 03:00:00" in text_out
    worker.shutdown()


def test_jobs_list_show_and_every_verb(dsn: str, engine: Engine) -> None:
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("tasks", max_attempts=1, archive=True)
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    ids = [
        m.id
        for m in producer.batch_enqueue(
            [{"n": i} for i in range(6)], headers={"tenant": "acme"}, entrypoint="e"
        )
    ]
    consumer = SyncConsumer(engine, "tasks", schema=SCHEMA, listen=False)
    (first,) = consumer.dequeue()
    try:
        raise ValueError("no such order")
    except ValueError as exc:
        consumer.nack(first, error=exc)  # dead, with its traceback

    listed = json.loads(ok(dsn, "jobs", "list", "--queue", "tasks", "--json"))
    assert [j["id"] for j in listed] == sorted(ids, reverse=True)
    dead = ok(dsn, "jobs", "list", "--status", "dead")
    assert dead.splitlines()[2].split()[:4] == [str(first.id), "tasks", "e", "dead"]
    by_header = json.loads(
        ok(dsn, "jobs", "list", "--header", "tenant=acme", "--limit", "2", "--json")
    )
    assert [j["id"] for j in by_header] == [ids[5], ids[4]]
    paged = ok(dsn, "jobs", "list", "--limit", "2")
    assert f"--after-id {ids[4]}" in paged

    shown = ok(dsn, "jobs", "show", str(first.id))
    assert "status      dead" in shown and "ValueError: no such order" in shown
    assert "Traceback (most recent call last)" in shown
    assert json.loads(ok(dsn, "jobs", "show", str(ids[1]), "--json"))["payload"] == {"n": 1}

    assert ok(dsn, "jobs", "cancel", str(ids[1])).strip() == f"cancelled 1 job(s): {ids[1]}"
    assert ok(dsn, "jobs", "retry", str(first.id)).strip() == f"retried 1 job(s): {first.id}"
    assert ok(dsn, "jobs", "reschedule", str(ids[2]), "--delay", "600").strip() == (
        f"rescheduled job {ids[2]}"
    )
    assert rows(engine, "SELECT status FROM pgqueue_jobs WHERE id = :id", id=ids[2]) == [
        ("scheduled",)
    ]
    assert ok(dsn, "jobs", "delete", str(ids[3])).strip() == f"deleted 1 job(s): {ids[3]}"
    # Bulk: refused without --yes (no terminal to ask on), then done.
    refused = Command(["jobs", "cancel", "--queue", "tasks"], dsn=dsn).result()
    assert refused.code == 2 and "needs --yes" in refused.err
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs WHERE status = 'queued'") == 3
    bulk = json.loads(ok(dsn, "jobs", "cancel", "--queue", "tasks", "--yes", "--json"))
    assert bulk == {"cancelled": sorted([first.id, ids[2], ids[4], ids[5]])}
    outcomes = rows(engine, "SELECT id, outcome FROM pgqueue_archive ORDER BY id")
    assert [tuple(r) for r in outcomes] == [
        (first.id, "cancelled"),
        (ids[1], "cancelled"),
        *[(i, "cancelled") for i in (ids[2],)],
        (ids[3], "deleted"),
        (ids[4], "cancelled"),
        (ids[5], "cancelled"),
    ]
    # Errors: one clear line each, the database unchanged.
    errors = together(
        dsn,
        ["jobs", "show", "999999"],
        ["jobs", "cancel", "999999"],
        ["jobs", "list", "--status", "finished"],
        ["jobs", "reschedule", str(ids[5]), "--delay", "5"],
        ["jobs", "cancel", "1", "--queue", "tasks"],
        ["jobs", "reschedule", str(ids[5]), "--run-at", "tomorrow"],
    )
    assert [r.code for r in errors] == [1, 1, 2, 1, 2, 2], [r.err for r in errors]
    assert all(r.err.startswith("pgqueue: error: ") for r in errors if r.code != 1 or r.err)
    # A completed job shows its result.
    done = producer.enqueue({"n": 6})
    (leased,) = consumer.dequeue()
    assert leased.id == done.id and consumer.ack(leased, result={"answer": 42})
    shown = ok(dsn, "jobs", "show", str(done.id))
    assert "status      completed" in shown and 'result      {"answer": 42}' in shown


def test_run_drain_processes_every_job_and_exits(dsn: str, engine: Engine) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    fresh(engine, worker_ledger(SCHEMA))
    SyncProducer(engine, "tasks", schema=SCHEMA).batch_enqueue(
        [{"n": i, "sleep": 0.05} for i in range(40)]
    )
    env = {"PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": SCHEMA, "PGQUEUE_TEST_WORKER_FACE": "sync"}
    r = Command(
        ["run", WORKER_APP, "--drain", "--concurrency", "2", "--queues", "tasks,x"],
        dsn=dsn,
        env=env,
    ).result()
    assert r.code == 0, r.err
    assert (
        "worker stopped: {'completed': 40, 'failed': 0, 'dead': 0, "
        "'cancelled': 0, 'snoozed': 0, 'lost': 0}" in r.err
    )
    done = rows(engine, "SELECT count(*), count(DISTINCT job_id) FROM worker_ledger")[0]
    assert tuple(done) == (40, 40)
    assert scalar(engine, "SELECT count(*) FROM pgqueue_jobs") == 0
    peak = scalar(
        engine,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM worker_ledger a"
        " JOIN worker_ledger b ON b.started <= a.started AND b.finished > a.started"
        " GROUP BY a.id) AS o",
    )
    assert peak == 2  # --concurrency 2 overrides the worker's 4
    assert rows(engine, "SELECT queues, status FROM pgqueue_workers WHERE kind = 'worker'") == [
        ("tasks,x", "stopped")
    ]


# --------------------------------------------------------------------------- errors
def test_errors_are_one_clear_line_with_documented_exit_codes(dsn: str, clean: URL) -> None:
    """0 success, 1 failure, 2 bad usage or input, 3 database unreachable, 4 schema not
    installed, 5 worker module not found (cli.py's docstring)."""
    missing_schema_env = {"PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": "pgq_missing"}
    bad_lines = '{"n": 1}\n{"n": 2}\nnot json\n'
    engine = make_sync_engine(clean)
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    cases: list[tuple[int, str, Command]] = [
        (3, "refused", Command(["queue", "list"], dsn="postgresql://postgres@127.0.0.1:1/x")),
        (
            3,
            "nonexistent.invalid",
            Command(["install"], dsn="postgresql://u@nonexistent.invalid/x"),
        ),
        (2, "needs PostgreSQL", Command(["queue", "list"], dsn="mysql://u@localhost/x")),
        # A malformed URL is shown with its password masked (it once was printed).
        (
            2,
            "not a database URL: 'postgresql://u:***@h:notaport/x'",
            Command(["queue", "list"], dsn="postgresql://u:s3cr3t-pw@h:notaport/x"),
        ),
        (
            2,
            "not a database URL: 'postgres ql://u:***@/'",
            Command(["queue", "list"], dsn="postgres ql://u:s3cr3t-pw@@/"),
        ),
        (2, "no database: pass --dsn", Command(["queue", "list"], dsn=None)),
        (4, "pgqueue install", Command(["queue", "list"], dsn=dsn, schema="pgq_missing")),
        (
            4,
            "pgqueue install",
            # no --schema: the app's own PGQUEUE_SCHEMA (the flag would be exported to it)
            Command(["run", WORKER_APP], dsn=dsn, schema=None, env=missing_schema_env),
        ),
        (5, "cannot import 'no_such_module_x'", Command(["run", "no_such_module_x:w"], dsn=dsn)),
        (5, "has no 'nothing'", Command(["run", "tests.support.worker_app:nothing"], dsn=dsn)),
        (2, "pass --yes to confirm", Command(["uninstall"], dsn=dsn)),
        (2, "invalid queue name", Command(["queue", "create", "-bad name"], dsn=dsn)),
        (1, "does not exist", Command(["enqueue", "nowhere", '{"n": 1}'], dsn=dsn)),
        (
            2,
            "line 3 is not JSON: Expecting value: line 1 column 1 (char 0); 2 job(s) before it",
            Command(["enqueue", "tasks", "--batch-size", "2"], dsn=dsn, stdin=bad_lines),
        ),
        (
            2,
            "not a SyncWorker or AsyncWorker",
            Command(["run", "tests.support.worker_app:ENV"], dsn=dsn),
        ),
    ]
    for code, message, command in cases:
        r = command.result()
        assert r.code == code, f"{command.args}: exit {r.code}, expected {code}\n{r.err}"
        assert r.err.startswith("pgqueue: error: ") and message in r.err, (command.args, r.err)
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert "s3cr3t-pw" not in r.err + r.out
    with engine.begin() as conn:  # nothing else was written by the failed commands
        payloads = conn.execute(text("SELECT payload->>'n' FROM pgqueue_jobs ORDER BY id"))
        assert [r[0] for r in payloads] == ["1", "2"]  # the first batch of 2 (and said so)
        assert conn.execute(text("SELECT count(*) FROM pgqueue_queues")).scalar() == 1
    engine.dispose()


def test_workflows_list_show_cancel_retry(dsn: str, engine: Engine) -> None:
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("tasks")
    producer = SyncProducer(engine, "tasks", schema=SCHEMA)
    wf = Workflow("nightly")
    first = wf.add({"n": 1}, entrypoint="extract")
    wf.add({"n": 2}, entrypoint="report", after=[first])
    run = producer.enqueue_workflow(wf)
    listed = json.loads(ok(dsn, "workflows", "list", "--json"))
    assert [(w["id"], w["name"], w["nodes"]) for w in listed] == [(run.id, "nightly", 2)]
    assert "nightly" in ok(dsn, "workflows", "list")
    shown = ok(dsn, "workflows", "show", str(run.id))
    assert "blocked 1" in shown and "queued 1" in shown
    (line,) = [s for s in shown.splitlines() if s.startswith(str(run.job_ids[1]))]
    assert line.split()[1:5] == ["tasks", "report", "blocked", str(run.job_ids[0])]
    cancelled = json.loads(ok(dsn, "workflows", "cancel", str(run.id), "--json"))
    assert cancelled == list(run.job_ids)
    assert "retried 2 node(s)" in ok(dsn, "workflows", "retry", str(run.id))
    info = admin.get_workflow(run.id)
    assert info is not None and [n.status for n in info.nodes] == ["queued", "blocked"]
    r = Command(("workflows", "show", "999"), dsn=dsn).result()
    assert r.code != 0 and "no workflow 999" in r.err
    producer.close()


# --------------------------------------------------------------------------- retention
RETENTION = "SELECT retain_completed, retain_cancelled, retain_dead FROM pgqueue_queues"


def test_queue_retention_create_update_and_maintain(dsn: str, engine: Engine) -> None:
    ok(dsn, "queue", "create", "tasks", "--archive", "--retain-completed", "1d12h")
    assert [tuple(r) for r in rows(engine, RETENTION)] == [(129600.0, 604800.0, 2592000.0)]
    out = ok(
        dsn,
        "queue",
        "update",
        "tasks",
        "--retain-cancelled",
        "15m",
        "--retain-dead",
        "forever",
        "--max-attempts",
        "9",
    )
    assert "retain_dead=forever" in out and "max_attempts=9" in out
    assert [tuple(r) for r in rows(engine, RETENTION)] == [(129600.0, 900.0, None)]
    assert scalar(engine, "SELECT max_attempts FROM pgqueue_queues") == 9
    rows(
        engine,
        "INSERT INTO pgqueue_archive (id, queue, entrypoint, payload, priority, attempts,"
        " enqueued_at, finished_at, outcome) VALUES"
        " (1, 'tasks', 'e', '{}', 0, 1, now(), now() - interval '2 days', 'completed'),"
        " (2, 'tasks', 'e', '{}', 0, 1, now(), now() - interval '1 hour', 'completed')",
    )
    report = json.loads(ok(dsn, "maintain", "--json"))
    assert (report["completed_pruned"], report["complete"]) == (1, True)
    assert [r[0] for r in rows(engine, "SELECT id FROM pgqueue_archive")] == [2]
    assert "pruned 0 completed" in ok(dsn, "maintain")


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "update", "tasks", "--retain-dead", "1 day"],
        ["queue", "update", "tasks", "--retain-dead", "-5"],
        ["queue", "update", "tasks", "--retain-dead", "1x"],
        ["queue", "update", "tasks"],
        ["queue", "create", "other", "--retain-completed", "soon"],
    ],
)
def test_queue_retention_bad_values_are_usage_errors(
    dsn: str, engine: Engine, args: list[str]
) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks")
    before = [tuple(r) for r in rows(engine, RETENTION)]
    r = Command(args, dsn=dsn).result()
    assert r.code == 2, (r.code, r.out, r.err)
    assert [tuple(r) for r in rows(engine, RETENTION)] == before
    assert rows(engine, "SELECT name FROM pgqueue_queues") == [("tasks",)]


# --------------------------------------------------------------------------- click
def test_shell_completion_script_and_completions() -> None:
    """``_PGQUEUE_COMPLETE=bash_source pgqueue`` prints the script to eval (docs/cli.md);
    the script's callback completes commands, subcommands and options."""
    script, zsh, commands, verbs, options = together(
        "",
        [],
        [],
        [],
        [],
        [],
        dsn_for=None,
        envs=[
            {"_PGQUEUE_COMPLETE": "bash_source"},
            {"_PGQUEUE_COMPLETE": "zsh_source"},
            {"_PGQUEUE_COMPLETE": "bash_complete", "COMP_WORDS": "pgqueue jo", "COMP_CWORD": "1"},
            {
                "_PGQUEUE_COMPLETE": "bash_complete",
                "COMP_WORDS": "pgqueue jobs ",
                "COMP_CWORD": "2",
            },
            {
                "_PGQUEUE_COMPLETE": "bash_complete",
                "COMP_WORDS": "pgqueue stats --",
                "COMP_CWORD": "2",
            },
        ],
    )
    assert script.code == 0 and "_pgqueue_completion()" in script.out, script.err
    assert "complete -o nosort -F _pgqueue_completion pgqueue" in script.out
    assert zsh.code == 0 and "#compdef pgqueue" in zsh.out, zsh.err
    assert commands.out.splitlines() == ["plain,jobs"], commands.err
    completed = {line.split(",")[1] for line in verbs.out.splitlines()}
    assert completed == {"list", "show", "cancel", "retry", "delete", "reschedule"}
    completed = {line.split(",")[1] for line in options.out.splitlines()}
    assert {"--interval", "--once", "--json"} <= completed


def test_json_on_queue_list_and_health(dsn: str, engine: Engine) -> None:
    SyncAdmin(engine, schema=SCHEMA).create_queue("tasks", max_attempts=3)
    SyncProducer(engine, "tasks", schema=SCHEMA).batch_enqueue([{}, {}])
    worker = SyncWorker(engine, ["tasks"], schema=SCHEMA, hostname="json-host")
    info = worker.register()
    queues, health, stale = together(
        dsn,
        ["queue", "list", "--json"],
        ["health", "--hostname", "json-host", "--json"],
        ["health", "--hostname", "elsewhere", "--json"],
    )
    (q,) = json.loads(queues.out)
    assert q["queue"]["name"] == "tasks" and q["queue"]["max_attempts"] == 3
    assert q["metrics"]["ready"] == 2
    assert health.code == 0, health.err
    assert [(h["registration"]["id"], h["healthy"]) for h in json.loads(health.out)] == [
        (info.id, True)
    ]
    assert (stale.code, json.loads(stale.out)) == (1, [])
    assert "no healthy worker on elsewhere" in stale.err
    worker.shutdown()


def test_usage_errors_exit_2_with_one_line() -> None:
    """Bad flags are click's usage errors: exit 2, ``pgqueue: error: ...`` on one line."""
    results = together(
        "postgresql://postgres@127.0.0.1:1/x",
        ["stats", "--interval", "0"],
        ["jobs", "reschedule", "1", "--delay", "1", "--run-at", "2026-01-01"],
        ["queue", "list", "--no-such-flag"],
        ["grant", "someone", "--as", "owner"],
        ["nosuchcommand"],
        [],
    )
    for r in results:
        assert r.code == 2, (r.code, r.err)
        assert r.err.startswith("pgqueue: error: ") and len(r.err.strip().splitlines()) == 1
    assert "must be a number > 0" in results[0].err
    assert "give one, not both" in results[1].err
    assert "--no-such-flag" in results[2].err  # (the wording is click's, per version)
    version = ok(None, "--version", schema=None)
    assert version.startswith("pgqueue ")
