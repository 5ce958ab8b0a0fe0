"""The dashboard over HTTP (Starlette's test client) against a real PostgreSQL: what it
shows, what it refuses, what it does and records. The browser tests
(``tests/system/test_web_browser.py``) check the same pages in Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from pgqueue import InvalidArgument, SyncAdmin, SyncConsumer, SyncProducer, Workflow
from pgqueue.web import create_app
from pgqueue.web._live import Hub
from tests.support.db import SCHEMA, dsn_of, make_async_engine

USER, PASSWORD = "ops", "s3cret-pass"
AUTH = {"authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
XSS = ["<script>window.__xss=1</script>", '"><img src=x onerror="window.__xss=1">']


@pytest.fixture
def admin(sync_engine: Engine) -> SyncAdmin:
    return SyncAdmin(sync_engine, schema=SCHEMA)


def client(clean: URL, **options: Any) -> TestClient:
    app = create_app(dsn_of(clean), schema=SCHEMA, live=False, **options)
    return TestClient(app)


@pytest.fixture
def ro(clean: URL) -> Iterator[TestClient]:
    with client(clean) as c:
        yield c


@pytest.fixture
def rw(clean: URL) -> Iterator[TestClient]:
    with client(clean, actions=True, username=USER, password=PASSWORD) as c:
        c.headers.update(AUTH)
        yield c


def csrf(c: TestClient, path: str = "/") -> str:
    page = c.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def dead_jobs(sync_engine: Engine, queue: str, errors: list[str]) -> list[int]:
    """Jobs dead-lettered with these errors, one each (max_attempts 1, nacked)."""
    producer = SyncProducer(sync_engine, queue, schema=SCHEMA)
    consumer = SyncConsumer(sync_engine, queue, schema=SCHEMA)
    ids = [m.id for m in producer.batch_enqueue([{"n": i} for i in range(len(errors))])]
    leased = consumer.dequeue(batch_size=len(errors))
    assert sorted(m.id for m in leased) == sorted(ids)
    by_id = {m.id: m for m in leased}
    for job_id, error in zip(ids, errors, strict=True):
        consumer.nack(by_id[job_id], error=error)
    return ids


def test_every_page_renders_read_only_and_refuses_actions(
    ro: TestClient, admin: SyncAdmin, sync_engine: Engine
) -> None:
    admin.create_queue("mail", max_attempts=1)
    SyncProducer(sync_engine, "mail", schema=SCHEMA).enqueue({"to": "a@example.org"})
    job = admin.list_jobs("mail")[0]
    for path in ("/", "/queues/mail", "/jobs", f"/jobs/{job.id}", "/dead", "/workers"):
        r = ro.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert '<form method="post"' not in r.text, f"{path} offers an action read-only"
    for path in ("/schedules", "/system", "/audit"):
        assert ro.get(path).status_code == 200, path
    assert ro.get("/queues/nope").status_code == 404
    assert ro.get("/jobs/999999").status_code == 404
    token = "0" * 64  # read-only pages carry no token: refused before it is looked at
    r = ro.post("/queues/mail/pause", data={"csrf": token})
    assert r.status_code == 403 and "read-only" in r.text
    assert not admin.get_queue("mail").paused
    r = ro.post("/jobs/action", data={"csrf": token, "action": "delete", "ids": str(job.id)})
    assert r.status_code == 403
    assert admin.get_job(job.id) is not None


def test_actions_need_credentials_configured(clean: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGQUEUE_WEB_TOKEN", "PGQUEUE_WEB_USERNAME", "PGQUEUE_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InvalidArgument, match="actions need authentication"):
        create_app(dsn_of(clean), schema=SCHEMA, actions=True)
    with pytest.raises(InvalidArgument):
        create_app(dsn_of(clean), schema=SCHEMA, actions=True, username="only-a-user")
    with pytest.raises(InvalidArgument, match="16 characters"):
        create_app(dsn_of(clean), schema=SCHEMA, actions=True, token="short")
    monkeypatch.setenv("PGQUEUE_WEB_TOKEN", "t" * 32)
    app = create_app(dsn_of(clean), schema=SCHEMA, actions=True)  # from the environment
    with TestClient(app) as c:
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"authorization": "Bearer " + "x" * 32}).status_code == 401
        assert c.get("/", headers={"authorization": "Bearer " + "t" * 32}).status_code == 200


def test_pgqueue_web_refuses_actions_without_credentials(dsn: str) -> None:
    from tests.support.procs import Command

    env = {"PGQUEUE_WEB_TOKEN": "", "PGQUEUE_WEB_USERNAME": "", "PGQUEUE_WEB_PASSWORD": ""}
    r = Command(["web", "--actions", "--port", "1"], dsn=dsn, env=env).result(timeout=30)
    assert r.code == 2 and "actions need authentication" in r.err, r.err


def test_credentials_guard_every_page_and_every_action(
    clean: URL, admin: SyncAdmin, rw: TestClient
) -> None:
    admin.create_queue("mail")
    with client(clean, actions=True, username=USER, password=PASSWORD) as anon:
        r = anon.get("/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        wrong = "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()
        assert anon.get("/jobs", headers={"authorization": wrong}).status_code == 401
        assert anon.post("/queues/mail/pause").status_code == 401
        assert anon.get("/static/app.css").status_code == 200  # no secret in a stylesheet
    assert not admin.get_queue("mail").paused
    assert f"signed in as <b>{USER}</b>" in rw.get("/").text


def test_an_action_needs_a_csrf_token_of_this_browser_and_this_origin(
    clean: URL, admin: SyncAdmin, rw: TestClient
) -> None:
    admin.create_queue("mail")
    token = csrf(rw, "/queues/mail")
    assert rw.post("/queues/mail/pause").status_code == 403
    assert rw.post("/queues/mail/pause", data={"csrf": "0" * 64}).status_code == 403
    cross = {"origin": "http://evil.example"}
    assert rw.post("/queues/mail/pause", data={"csrf": token}, headers=cross).status_code == 403
    # Another browser (its own cookie) cannot use this one's token.
    with client(clean, actions=True, username=USER, password=PASSWORD) as other:
        other.headers.update(AUTH)
        other.get("/queues/mail")
        assert other.post("/queues/mail/pause", data={"csrf": token}).status_code == 403
    assert not admin.get_queue("mail").paused
    r = rw.post("/queues/mail/pause", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/queues/mail"
    assert admin.get_queue("mail").paused
    rw.post("/queues/mail/resume", data={"csrf": token})
    assert not admin.get_queue("mail").paused
    audit = rw.get("/audit").text
    assert "pause queue" in audit and "resume queue" in audit and USER in audit


def test_bulk_retry_by_filter_confirms_the_count_then_acts_and_audits(
    admin: SyncAdmin, rw: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail", max_attempts=1)
    ids = dead_jobs(sync_engine, "mail", [f"TimeoutError: host {i} timed out" for i in range(7)])
    token = csrf(rw, "/jobs?queue=mail&status=dead")
    form = {"csrf": token, "scope": "filter", "queue": "mail", "status": "dead", "action": "retry"}
    confirm = rw.post("/jobs/action", data=form)
    assert confirm.status_code == 200
    assert re.search(r'id="confirm-count">7<', confirm.text), confirm.text
    assert all(admin.get_job(i).status == "dead" for i in ids)  # type: ignore[union-attr]
    done = rw.post("/jobs/action", data={**form, "confirm": "7"})
    assert done.status_code == 200 and "retried 7 of 7 job(s)" in done.text
    assert all(admin.get_job(i).status == "queued" for i in ids)  # type: ignore[union-attr]
    with sync_engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT actor, action, target, count FROM {SCHEMA}.pgqueue_audit")
        ).one()
    assert tuple(row) == (USER, "retry jobs", {"queue": "mail", "status": ["dead"]}, 7)


def test_selected_jobs_are_deleted_after_confirmation(
    admin: SyncAdmin, rw: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail")
    ids = [m.id for m in SyncProducer(sync_engine, "mail", schema=SCHEMA).batch_enqueue([1, 2, 3])]
    token = csrf(rw, "/jobs")
    form = {"csrf": token, "action": "delete", "ids": [str(ids[0]), str(ids[2])]}
    confirm = rw.post("/jobs/action", data=form)
    assert 'id="confirm-count">2<' in confirm.text
    rw.post("/jobs/action", data={**form, "confirm": "2"})
    assert [j.id for j in admin.list_jobs("mail")] == [ids[1]]


def test_an_action_redirects_only_within_the_dashboard(
    admin: SyncAdmin, rw: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail")
    producer = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    token = csrf(rw, "/jobs")
    for back, expected in (
        ("//evil.example/x", "/jobs?done="),
        ("/\\evil.example", "/jobs?done="),
        ("https://evil.example", "/jobs?done="),
        ("/jobs?queue=mail", "/jobs?queue=mail&done="),
    ):
        job = producer.enqueue({})
        form = {"csrf": token, "action": "delete", "ids": str(job.id), "back": back}
        r = rw.post("/jobs/action", data={**form, "confirm": "1"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith(expected), back


def test_dead_letters_group_by_cause_and_a_group_is_requeued_alone(
    admin: SyncAdmin, rw: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail", max_attempts=1)
    timeouts = [f"TimeoutError: smtp 10.0.0.{i} timed out after {i}.5s" for i in range(5)]
    refused = [f"ConnectionRefusedError: user 'u{i}' refused (id 0x{i:x}ff)" for i in range(3)]
    ids = dead_jobs(sync_engine, "mail", timeouts + refused)
    page = rw.get("/dead").text
    groups = re.findall(r'<code class="err fingerprint">([^<]*)</code>', page)
    assert groups == [
        "TimeoutError: smtp #.# timed out after #s",
        "ConnectionRefusedError: user &#39;…&#39; refused (id #)",
    ]
    token = csrf(rw, "/dead")
    form = {
        "csrf": token,
        "queue": "mail",
        "fingerprint": "TimeoutError: smtp #.# timed out after #s",
    }
    assert 'id="confirm-count">5<' in rw.post("/dead/requeue", data=form).text
    rw.post("/dead/requeue", data={**form, "confirm": "5"})
    statuses = [admin.get_job(i).status for i in ids]  # type: ignore[union-attr]
    assert statuses == ["queued"] * 5 + ["dead"] * 3


def test_jobs_filter_and_keyset_paging_cover_each_job_once(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail")
    admin.create_queue("other")
    mail = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    ids = [m.id for m in mail.batch_enqueue([{"n": i} for i in range(120)], entrypoint="send")]
    mail.enqueue({"n": -1}, entrypoint="bounce", headers={"tenant": "acme"})
    SyncProducer(sync_engine, "other", schema=SCHEMA).enqueue({})
    seen: list[int] = []
    url = "/jobs?queue=mail&entrypoint=send"
    while url:
        page = ro.get(url).text
        seen += [int(i) for i in re.findall(r'<td class="num"><a href="/jobs/(\d+)">', page)]
        found = re.search(r'<a href="([^"]+)" id="next-page">', page)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == sorted(ids, reverse=True)
    page = ro.get("/jobs?header=tenant%3Dacme").text
    assert re.findall(r'<a href="/jobs/(\d+)">', page) == [str(ids[-1] + 1)]
    r = ro.get("/jobs?id=" + str(ids[3]), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{ids[3]}"


def test_everything_a_job_carries_is_escaped(
    admin: SyncAdmin, rw: TestClient, sync_engine: Engine
) -> None:
    name = "x<script>"  # a queue name may hold markup too
    with pytest.raises(InvalidArgument):
        admin.create_queue(name)  # ...or not: queue names are checked
    admin.create_queue("mail", max_attempts=1)
    producer = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    job = producer.enqueue({"body": XSS[0]}, headers={"h": XSS[1]}, entrypoint=XSS[1])
    consumer = SyncConsumer(sync_engine, "mail", schema=SCHEMA)
    (m,) = consumer.dequeue()
    consumer.nack(m, error="ValueError: " + XSS[0] + XSS[1])
    for path in (f"/jobs/{job.id}", "/jobs", "/dead", "/queues/mail"):
        page = rw.get(path).text
        for payload in XSS:
            assert payload not in page, (path, payload)
        assert "<img src=x" not in page and "<script>window" not in page, path


def test_a_page_that_reads_too_long_is_stopped_and_says_so(
    clean: URL, admin: SyncAdmin, sync_engine: Engine
) -> None:
    """Every read runs under the dashboard's statement_timeout: here the overview's
    counters wait on a lock another session holds, and the page gives up after it."""
    admin.create_queue("mail")
    with client(clean, statement_timeout=0.3) as c, sync_engine.connect() as locker:
        assert c.get("/").status_code == 200
        locker.execute(text(f"LOCK TABLE {SCHEMA}.pgqueue_stats IN ACCESS EXCLUSIVE MODE"))
        r = c.get("/")
        assert r.status_code == 503 and "statement timeout" in r.text
        locker.rollback()
        assert c.get("/").status_code == 200


def test_mounted_under_a_prefix(clean: URL, admin: SyncAdmin) -> None:
    admin.create_queue("mail")
    host = Starlette(routes=[Mount("/ops/queues", app=create_app(dsn_of(clean), schema=SCHEMA))])
    with TestClient(host) as c:
        page = c.get("/ops/queues/").text
        assert 'href="/ops/queues/queues/mail"' in page
        assert 'href="/ops/queues/static/app.css"' in page
        assert c.get("/ops/queues/queues/mail").status_code == 200
        assert c.get("/ops/queues/static/app.js").status_code == 200


def test_mounted_in_fastapi_with_the_hosts_own_authentication(clean: URL, admin: SyncAdmin) -> None:
    """The host decides who the operator is (its session, its SSO): here a header its
    own middleware would have set."""
    from fastapi import FastAPI
    from starlette.requests import Request

    async def operator(request: Request) -> str | None:
        return request.headers.get("x-host-user")

    admin.create_queue("mail")
    host = FastAPI()
    dashboard = create_app(dsn_of(clean), schema=SCHEMA, actions=True, authenticate=operator)
    host.mount("/admin/jobs", dashboard)
    with TestClient(host) as c:
        assert c.get("/admin/jobs/queues/mail").status_code == 401
        c.headers["x-host-user"] = "alice"
        page = c.get("/admin/jobs/queues/mail").text
        assert 'action="/admin/jobs/queues/mail/pause"' in page
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert token
        r = c.post(
            "/admin/jobs/queues/mail/pause", data={"csrf": token.group(1)}, follow_redirects=False
        )
        assert r.status_code == 303 and r.headers["location"] == "/admin/jobs/queues/mail"
        assert admin.get_queue("mail").paused
        assert "alice" in c.get("/admin/jobs/audit").text
        # A mounted app's lifespan is the host's: close it as the host would, on its loop.
        assert c.portal is not None
        c.portal.call(dashboard.state.pgqueue.close)


def test_overview_counts_each_queue_by_status(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail", max_attempts=1)
    admin.create_queue("sms")
    dead_jobs(sync_engine, "mail", ["E: 1", "E: 2"])
    SyncProducer(sync_engine, "mail", schema=SCHEMA).batch_enqueue([{}] * 3)
    SyncProducer(sync_engine, "sms", schema=SCHEMA).enqueue({}, delay=60)
    page = ro.get("/").text
    assert re.findall(r'<h2><a href="/queues/(\w+)">', page) == ["mail", "sms"]

    def counts(name: str) -> list[str]:
        card = page[page.index(f'href="/queues/{name}"') :]
        card = card[: card.index("</table>")]
        return re.findall(r'status=\w+">([^<]*)</a>', card)

    assert counts("mail") == ["3", "0", "0", "2"]  # queued, scheduled, running, dead
    assert counts("sms") == ["0", "1", "0", "0"]


def test_queue_page_shows_the_busiest_partition_keys(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("exports")
    producer = SyncProducer(sync_engine, "exports", schema=SCHEMA)
    producer.batch_enqueue([{}] * 3, entrypoint="export", key="customer-42")
    producer.enqueue({}, entrypoint="export", key="<b>customer-7</b>")
    producer.enqueue({}, entrypoint="export")  # keyless: not a key
    page = ro.get("/queues/exports").text
    section = page[page.index("Partition keys") :]
    section = section[: section.index("</table>")]
    rows = re.findall(
        r"<tr><td>(\w+)</td><td><a [^>]*>([^<]*)</a></td>\s*"
        r'<td class="num">(\d+)</td><td class="num">(\d+)</td>',
        section,
    )
    assert rows == [
        ("export", "customer-42", "0", "3"),
        ("export", "&lt;b&gt;customer-7&lt;/b&gt;", "0", "1"),
    ]
    admin.create_queue("plain")
    assert "Partition keys" not in ro.get("/queues/plain").text


def test_overview_charts_the_per_minute_counters(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail")
    with sync_engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.pgqueue_stats (minute, queue, entrypoint, completed, failed,"
                " dead, durations) VALUES"
                " (date_trunc('minute', now()), 'mail', 'a', 40, 2, 1,"
                " '{0,0,0,10,0,0,0,0,0,1,0,0,0,0,0,0,0}'),"
                " (date_trunc('minute', now()) - interval '5 minutes', 'mail', 'b', 2, 0, 0,"
                " NULL),"
                " (date_trunc('minute', now()) - interval '2 hours', 'mail', 'a', 1000, 0, 0,"
                " '{9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9}')"
            )
        )
    page = ro.get("/").text
    assert "42 completed" in page and "3 failed" in page
    queue = ro.get("/queues/mail").text
    assert re.search(r">a</a></td>\s*<td class=\"num\">40</td>", queue), queue
    # p50 and p95 of entrypoint a's durations in the last hour: 10 jobs ≤ 10 ms, 1 ≤ 1 s.
    row = queue[queue.index(">a</a>") :]
    row = row[: row.index("</tr>")]
    assert re.findall(r'<td class="num">(≤[^<]*)</td>', row) == ["≤ 10 ms", "≤ 1 s"]


async def test_live_stream_sends_a_change_when_a_job_is_enqueued(
    clean: URL, sync_engine: Engine
) -> None:
    SyncAdmin(sync_engine, schema=SCHEMA).create_queue("mail")
    engine = make_async_engine(clean, "asyncpg")
    hub = Hub(engine, SCHEMA)
    try:
        stream = hub.stream(_never, poll_interval=30.0)  # no poll: only NOTIFY can wake it
        assert await anext(stream) == "event: mode\ndata: listen\n\n"
        nxt = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        assert not nxt.done()
        await asyncio.to_thread(SyncProducer(sync_engine, "mail", schema=SCHEMA).enqueue, {})
        assert (await asyncio.wait_for(nxt, 5)).startswith("event: change")
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
    finally:
        await hub.close()
        await engine.dispose()


async def _never() -> bool:
    return False


def failing_run(admin: SyncAdmin, sync_engine: Engine) -> tuple[Any, dict[str, int]]:
    """A run named with markup: its root dead, one child cancelled by it, one that runs
    anyway (queued), and a second root completed. Returns the run and the node job ids."""
    admin.create_queue("mail", max_attempts=1, archive=True)
    producer = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    wf = Workflow(XSS[0] + XSS[1])
    root = wf.add({"n": XSS[0]}, entrypoint="extract")
    wf.add({"n": "child"}, entrypoint=XSS[1], after=[root])
    wf.add({"n": "anyway"}, entrypoint="report", after=[root], on_parent_failure="run")
    other = wf.add({"n": "other"}, entrypoint="extract")
    run = producer.enqueue_workflow(wf)
    consumer = SyncConsumer(sync_engine, "mail", schema=SCHEMA)
    by_n = {m.payload["n"]: m for m in consumer.dequeue(batch_size=2)}
    consumer.nack(by_n[XSS[0]], error="ValueError: " + XSS[1])
    consumer.ack(by_n["other"])
    producer.close()
    ids = dict(zip(["root", "child", "anyway", "other"], run.job_ids, strict=True))
    del other
    return run, ids


def test_workflows_list_and_a_runs_graph_with_its_node_states(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine
) -> None:
    run, ids = failing_run(admin, sync_engine)
    listing = ro.get("/workflows")
    assert listing.status_code == 200
    assert f'href="/workflows/{run.id}"' in listing.text
    assert "<script>" not in listing.text and "&lt;script&gt;" in listing.text
    row = listing.text[listing.text.index(f'href="/workflows/{run.id}"') :]
    # nodes, completed, failed (dead and cancelled), in progress
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row)[:4] == ["4", "1", "2", "1"]
    page = ro.get(f"/workflows/{run.id}")
    assert page.status_code == 200, page.text
    assert "<script>" not in page.text and "<img" not in page.text
    states = dict(re.findall(r'<a href="/jobs/(\d+)" class="node n-(\w+)"', page.text))
    assert states == {
        str(ids["root"]): "dead",
        str(ids["child"]): "cancelled",
        str(ids["anyway"]): "queued",
        str(ids["other"]): "completed",
    }
    assert page.text.count('class="edge"') == 2  # root → child, root → anyway
    counts = page.text[page.text.index('id="node-counts"') :]
    counts = counts[: counts.index("</p>")]
    assert re.findall(r"s-(\w+)\">\w+</span> (\d+)", counts) == [
        ("queued", "1"),
        ("completed", "1"),
        ("dead", "1"),
        ("cancelled", "1"),
    ]
    assert '<form method="post"' not in page.text  # read-only: no action
    job = ro.get(f"/jobs/{ids['child']}")
    assert f'href="/workflows/{run.id}" id="job-workflow"' in job.text
    assert "node 1 of 4" in job.text
    assert ro.get("/workflows/999999").status_code == 404


def test_a_run_is_cancelled_and_retried_after_confirming_and_audited(
    admin: SyncAdmin, rw: TestClient, sync_engine: Engine
) -> None:
    run, ids = failing_run(admin, sync_engine)
    token = csrf(rw, f"/workflows/{run.id}")
    r = rw.post(f"/workflows/{run.id}/retry", data={"csrf": token})
    assert r.status_code == 200 and 'id="confirm-count">2<' in r.text  # dead + cancelled
    root = admin.get_job(ids["root"])
    assert root is not None and root.status == "dead"
    r = rw.post(
        f"/workflows/{run.id}/retry", data={"csrf": token, "confirm": "2"}, follow_redirects=False
    )
    assert r.status_code == 303
    info = admin.get_workflow(run.id)
    assert info is not None
    assert {n.job_id: n.status for n in info.nodes}[ids["root"]] == "queued"
    r = rw.post(f"/workflows/{run.id}/cancel", data={"csrf": token})
    assert 'id="confirm-count">3<' in r.text  # root queued, child and anyway blocked
    r = rw.post(f"/workflows/{run.id}/cancel", data={"csrf": token, "confirm": "3"})
    assert r.status_code == 200 and "cancelled 3 node(s)" in r.text
    info = admin.get_workflow(run.id)
    assert info is not None and info.done
    r = rw.post(f"/workflows/{run.id}/cancel", data={"csrf": "0" * 64, "confirm": "1"})
    assert r.status_code == 403
    audit = rw.get("/audit").text
    assert "retry workflow" in audit and "cancel workflow" in audit


def test_system_page_shows_retention_what_it_will_remove_and_the_partitions(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine
) -> None:
    admin.create_queue("mail", max_attempts=1, archive=True)
    admin.create_queue("keep", retain_completed=None, retain_cancelled=None, retain_dead=None)
    dead_jobs(sync_engine, "mail", ["E: 1", "E: 2"])
    producer = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    producer.batch_enqueue([{}] * 3)
    consumer = SyncConsumer(sync_engine, "mail", schema=SCHEMA)
    for m in consumer.dequeue(batch_size=3):
        consumer.ack(m)
    with sync_engine.begin() as conn:  # finished and died 30 and 8 days ago
        conn.execute(
            text(
                f"UPDATE {SCHEMA}.pgqueue_jobs SET available_at = now() - interval '31 days'"
                f" WHERE id = (SELECT min(id) FROM {SCHEMA}.pgqueue_jobs WHERE status = 'dead')"
            )
        )
        conn.execute(
            text(
                f"UPDATE {SCHEMA}.pgqueue_archive SET finished_at = now() - interval '8 days'"
                f" WHERE id IN (SELECT id FROM {SCHEMA}.pgqueue_archive ORDER BY id LIMIT 2)"
            )
        )
    page = ro.get("/system").text
    table = page[page.index('id="retention"') :]
    table = table[: table.index("</table>")]
    rows = {name: cells for name, cells in re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", table, re.S)}
    keep = re.findall(r"<td[^>]*>([^<]*)</td>", rows["keep"])
    assert keep[1:7] == ["for ever", "for ever", "for ever", "—", "—", "—"]
    mail = re.findall(r"<td[^>]*>([^<]*)</td>", rows["mail"])
    assert mail[1:7] == ["7d 0h", "7d 0h", "30d 0h", "2", "0", "1"]
    partitions = page[page.index('id="partitions"') :]
    assert "pgqueue_archive_default" in partitions


def test_a_header_filter_searches_a_window_of_ids_at_a_time_and_finds_each_once(
    admin: SyncAdmin, ro: TestClient, sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgqueue.web import _queries

    monkeypatch.setattr(_queries, "HEADER_WINDOW", 5)
    admin.create_queue("mail", archive=True)
    producer = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    ids = [
        producer.enqueue({"n": i}, headers={"tenant": "acme" if i in (1, 8, 9) else "other"}).id
        for i in range(12)
    ]
    consumer = SyncConsumer(sync_engine, "mail", schema=SCHEMA)
    for m in consumer.dequeue(batch_size=2):  # the two oldest finish (the archive)
        consumer.ack(m)
    found: list[int] = []
    path: str | None = "/jobs?queue=mail&header=tenant%3Dacme"
    pages = 0
    while path is not None:
        page = ro.get(path).text
        assert 'id="searched"' in page
        found += [int(i) for i in re.findall(r'<td class="num"><a href="/jobs/(\d+)">', page)]
        link = re.search(r'<a href="(/jobs\?[^"]*)" id="next-page">', page)
        path = link.group(1).replace("&amp;", "&") if link else None
        pages += 1
    assert found == [ids[9], ids[8], ids[1]]
    assert pages >= 3  # 5 ids a page: 12 of them (more if the sequence did not start at 1)
