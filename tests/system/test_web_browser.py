"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against
``pgqueue web --actions`` serving a real PostgreSQL in a process of its own.

Every page loads without a console error; filtering, paging, a job's detail and its
lease panel, bulk retry of a dead-letter group, pause and resume work by clicking; a
live update arrives without a reload; payloads built to run script stay text; an
action is refused without credentials and without the CSRF token.

``PGQUEUE_WEB_SCREENSHOTS=docs/img`` saves a screenshot of each page there (how the
pictures in docs/dashboard.md are made).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from pgqueue import SyncAdmin, SyncConsumer, SyncProducer, Workflow
from tests.support.db import SCHEMA, dsn_of
from tests.support.servers import accepts, free_port

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = os.environ.get("PGQUEUE_CHROMIUM", "/usr/bin/chromium")
USER, PASSWORD = "ops", "browser-test-password"
XSS = ["<script>window.__xss = 1</script>", '"><img src=x onerror="window.__xss = 1">']

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def server(installed: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``pgqueue web --actions`` on a free port (credentials from the environment)."""
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    env = {
        **os.environ,
        "PGQUEUE_WEB_USERNAME": USER,
        "PGQUEUE_WEB_PASSWORD": PASSWORD,
        "PGQUEUE_WEB_TOKEN": "",
    }
    command = [sys.executable, "-m", "pgqueue", "--dsn", dsn_of(installed), "--schema", SCHEMA]
    command += ["web", "--port", str(port), "--actions"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not accepts(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "pgqueue web did not start: " + log.read_text()
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base: str, *, credentials: bool = True) -> None:
        options: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
        if credentials:
            options["http_credentials"] = {"username": USER, "password": PASSWORD}
        self.context = browser.new_context(base_url=base, **options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def go(self, path: str) -> Any:
        response = self.page.goto(path)
        self.page.wait_for_load_state("load")
        return response

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, server: str, clean: URL) -> Iterator[Page]:
    p = Page(browser, server)
    yield p
    p.close()


@pytest.fixture
def seeded(sync_engine: Engine) -> Iterator[dict[str, Any]]:
    """Queues and jobs in every state: ready, scheduled, running (held by a registered
    consumer), dead (two causes), completed; a schedule; an hour of counters."""
    s = seed(sync_engine)
    yield s
    s["consumer"].close()


def seed(engine: Engine) -> dict[str, Any]:
    admin = SyncAdmin(engine, schema=SCHEMA)
    admin.create_queue("mail", max_attempts=1, archive=True)
    admin.create_queue("reports")
    mail = SyncProducer(engine, "mail", schema=SCHEMA)
    ids = [m.id for m in mail.batch_enqueue([{"n": i} for i in range(75)], entrypoint="send")]
    consumer = SyncConsumer(
        engine, "mail", schema=SCHEMA, visibility_timeout=600, hostname="worker-1"
    )
    consumer.register()
    leased = consumer.dequeue(batch_size=8)
    for i, m in enumerate(leased[:6]):
        error = f"TimeoutError: smtp {i}.example.org timed out" if i < 4 else "KeyError: 'to'"
        consumer.nack(m, error=error)
    consumer.ack(leased[6])
    running = leased[7]
    mail.enqueue({"later": True}, delay=3600, entrypoint="send")
    SyncProducer(engine, "reports", schema=SCHEMA).enqueue({"r": 1}, headers={"tenant": "acme"})
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.pgqueue_schedules (name, cron, queue, entrypoint, last_tick)"
                " VALUES ('nightly', '0 3 * * *', 'reports', 'build',"
                " date_trunc('day', now()) - interval '2 days' + interval '3 hours')"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.pgqueue_stats (minute, queue, entrypoint, completed, failed,"
                " durations) SELECT date_trunc('minute', now()) - make_interval(mins => g),"
                " 'mail', 'send', 20 + g % 7 * 5, g % 5,"
                " ARRAY[0, 0, 1, 4, 9, 6, 3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]::bigint[]"
                " FROM generate_series(0, 59) g"
            )
        )
    return {"ids": ids, "running": running.id, "admin": admin, "consumer": consumer}


PAGES = [
    "/",
    "/queues/mail",
    "/jobs",
    "/dead",
    "/workflows",
    "/workers",
    "/schedules",
    "/system",
    "/audit",
]


def test_every_page_loads_without_console_errors(page: Page, seeded: dict[str, Any]) -> None:
    s = seeded
    shots = os.environ.get("PGQUEUE_WEB_SCREENSHOTS")
    for path in [*PAGES, f"/jobs/{s['running']}", "/jobs?queue=mail&status=dead"]:
        response = page.go(path)
        assert response.status == 200, path
        assert page.page.locator("h1").count() == 1, path
        if shots:
            name = path.strip("/").replace("/", "-").split("?")[0] or "overview"
            if "status=dead" in path:
                name = "jobs-filtered"
            elif name.startswith("jobs-"):
                name = "job"
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
    assert page.errors == [], page.errors


def test_filtering_and_paging(page: Page, seeded: dict[str, Any]) -> None:
    s = seeded
    page.go("/jobs")
    page.page.select_option("select[name=queue]", "mail")
    page.page.check("input[name=status][value=queued]")
    page.page.fill("input[name=entrypoint]", "send")
    page.page.click("#filters button[type=submit]")
    page.page.wait_for_url(re.compile(r"queue=mail"))
    first = [int(t) for t in page.page.locator("table.jobs tbody td.num a").all_inner_texts()]
    assert len(first) == 50 and first == sorted(first, reverse=True)
    page.page.click("#next-page")
    page.page.wait_for_url(re.compile(r"after="))
    second = [int(t) for t in page.page.locator("table.jobs tbody td.num a").all_inner_texts()]
    queued = sorted(set(s["ids"]) - set(range(s["ids"][0], s["ids"][0] + 8)), reverse=True)
    assert first + second == queued
    assert page.page.locator("#next-page").count() == 0
    page.page.fill("textarea[name=header]", "tenant=acme")
    page.page.select_option("select[name=queue]", "")
    page.page.uncheck("input[name=status][value=queued]")
    page.page.fill("input[name=entrypoint]", "")
    page.page.click("#filters button[type=submit]")
    page.page.wait_for_url(re.compile(r"header="))
    assert page.page.locator("table.jobs tbody tr").count() == 1
    assert "reports" in page.page.locator("table.jobs tbody").inner_text()
    assert page.errors == []


def test_job_detail_with_its_lease_panel(page: Page, seeded: dict[str, Any]) -> None:
    s = seeded
    page.go("/jobs?queue=mail&status=running")
    page.page.click(f"a[href='/jobs/{s['running']}']")
    page.page.wait_for_url(re.compile(rf"/jobs/{s['running']}$"))
    lease = page.page.locator("#lease").inner_text()
    assert "owner" in lease and "@worker-1" in lease
    assert re.search(r"holder's last heartbeat\s+[\d.]+m?s ago \(worker-1", lease), lease
    assert re.search(r"expires in\s+\d+m \d+s", lease), lease
    assert '"n":' in page.page.locator("#payload").inner_text()
    dead = s["admin"].list_jobs("mail", status="dead")[0]
    page.go(f"/jobs/{dead.id}")
    assert page.page.locator("#lease").count() == 0
    assert "attempt 1" in page.page.locator("ol.attempts").inner_text()
    assert page.errors == []


def test_bulk_retry_of_a_dead_letter_group(page: Page, seeded: dict[str, Any]) -> None:
    s = seeded
    page.go("/dead")
    groups = page.page.locator("tr.group")
    assert groups.count() == 2
    timeouts = groups.filter(has_text="TimeoutError")
    assert timeouts.locator("td.num").inner_text() == "4"
    timeouts.locator("button.requeue").click()
    assert page.page.locator("#confirm-count").inner_text() == "4"
    page.page.click("#confirm-button")
    page.page.wait_for_url(re.compile(r"/dead\?done="))
    assert "requeued 4 dead job(s) of mail" in page.page.locator(".done").inner_text()
    assert page.page.locator("tr.group").count() == 1
    dead = s["admin"].list_jobs("mail", status="dead")
    assert [j.last_error for j in dead] == ["KeyError: 'to'"] * 2
    page.go("/audit")
    assert "requeue dead group" in page.page.locator("table.audit").inner_text()
    assert page.errors == []


def test_pause_and_resume(page: Page, seeded: dict[str, Any]) -> None:
    s = seeded
    page.go("/queues/mail")
    page.page.click("#toggle-pause")
    page.page.wait_for_selector(".badge.paused")
    assert s["admin"].get_queue("mail").paused
    page.page.click("#toggle-pause")
    page.page.wait_for_selector(".badge.active")
    assert not s["admin"].get_queue("mail").paused
    assert page.errors == []


def test_a_live_update_arrives_without_a_reload(page: Page, sync_engine: Engine) -> None:
    SyncAdmin(sync_engine, schema=SCHEMA).create_queue("mail")
    page.go("/queues/mail")
    # (The page's CSP forbids eval, so no wait_for_function: Playwright's expect polls.)
    expect(page.page.locator("body")).to_have_attribute("data-live", "sse")
    cell = page.page.locator("#queue table.depth td.num").first
    assert cell.inner_text() == "0"
    page.page.evaluate("window.__same_page = true")
    SyncProducer(sync_engine, "mail", schema=SCHEMA).batch_enqueue([{}, {}, {}])
    expect(page.page.locator("#queue table.depth td.num").first).to_have_text("3", timeout=10_000)
    assert page.page.evaluate("window.__same_page") is True  # updated in place
    assert page.errors == []


def test_payloads_built_to_run_script_stay_text(page: Page, sync_engine: Engine) -> None:
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    admin.create_queue("mail", max_attempts=1)
    producer = SyncProducer(sync_engine, "mail", schema=SCHEMA)
    job = producer.enqueue({"body": XSS[0]}, headers={"h": XSS[1]}, entrypoint=XSS[1])
    consumer = SyncConsumer(sync_engine, "mail", schema=SCHEMA)
    (m,) = consumer.dequeue()
    consumer.nack(m, error="ValueError: " + XSS[0] + " " + XSS[1])
    for path in [f"/jobs/{job.id}", "/jobs", "/dead", "/queues/mail", "/"]:
        page.go(path)
        assert page.page.evaluate("window.__xss") is None, path
        assert page.page.locator("img[src=x]").count() == 0, path
    page.go(f"/jobs/{job.id}")
    assert XSS[0] in page.page.locator("#payload").inner_text()
    assert '<img src=x onerror=\\"window.__xss' in page.page.locator("#headers").inner_text()
    assert page.dialogs == [] and page.errors == []


def test_a_workflow_run_shows_its_graph_and_node_states_with_markup_inert(
    page: Page, sync_engine: Engine
) -> None:
    SyncAdmin(sync_engine, schema=SCHEMA).create_queue("etl", max_attempts=1, archive=True)
    producer = SyncProducer(sync_engine, "etl", schema=SCHEMA)
    wf = Workflow("nightly " + XSS[0] + XSS[1])
    extract = wf.add({"day": XSS[0]}, entrypoint="extract")
    parts = [wf.add({"part": i}, entrypoint="transform", after=[extract]) for i in range(4)]
    wf.add({"why": XSS[1]}, entrypoint=XSS[1], after=parts)
    run = producer.enqueue_workflow(wf)
    consumer = SyncConsumer(sync_engine, "etl", schema=SCHEMA)
    (first,) = consumer.dequeue()
    consumer.ack(first)
    leased = consumer.dequeue(batch_size=2)
    consumer.nack(leased[0], error="ValueError: " + XSS[1])
    producer.close()
    page.go("/workflows")
    page.page.click(f"a[href='/workflows/{run.id}']")
    page.page.wait_for_url(re.compile(rf"/workflows/{run.id}$"))
    states = [n.get_attribute("data-status") for n in page.page.locator("#graph a.node").all()]
    assert sorted(states) == ["cancelled", "completed", "dead", "queued", "queued", "running"]
    assert page.page.locator("#graph path.edge").count() == 8
    assert XSS[0] in page.page.locator("h1").inner_text()
    assert page.page.evaluate("window.__xss") is None
    assert page.page.locator("img[src=x]").count() == 0
    shots = os.environ.get("PGQUEUE_WEB_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(Path(shots) / "workflow.png"), full_page=True)
    page.page.click(f"#graph a.node[href='/jobs/{run.job_ids[0]}']")
    page.page.wait_for_url(re.compile(rf"/jobs/{run.job_ids[0]}$"))
    assert page.page.locator("#job-workflow").count() == 1
    assert XSS[0] in page.page.locator("#payload").inner_text()
    page.go(f"/jobs/{run.job_ids[-1]}")
    assert page.page.evaluate("window.__xss") is None
    assert page.dialogs == [] and page.errors == []


def test_an_action_is_refused_without_credentials_or_csrf_token(
    browser: Any, server: str, page: Page, sync_engine: Engine
) -> None:
    admin = SyncAdmin(sync_engine, schema=SCHEMA)
    admin.create_queue("mail")
    anonymous = Page(browser, server, credentials=False)
    try:
        # (Chromium turns a 401 with no credentials to offer into a navigation error.)
        with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.go("/queues/mail")
        assert anonymous.page.request.get("/queues/mail").status == 401
        r = anonymous.page.request.post("/queues/mail/pause", form={"csrf": "x"})
        assert r.status == 401
    finally:
        anonymous.close()
    page.go("/queues/mail")  # signed in, with the CSRF cookie: but no token in the request
    status = page.page.evaluate(
        "fetch('/queues/mail/pause', {method: 'POST', credentials: 'same-origin',"
        " headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'x=1'})"
        ".then(r => r.status)"
    )
    assert status == 403
    token = page.page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    forged = page.page.evaluate(
        "t => fetch('/queues/mail/pause', {method: 'POST', credentials: 'omit',"
        " headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'csrf=' + t})"
        ".then(r => r.status)",
        token,
    )
    assert forged in (401, 403)  # the token without the browser's cookie
    assert not admin.get_queue("mail").paused
