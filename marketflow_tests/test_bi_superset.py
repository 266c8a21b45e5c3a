"""`make bi` end to end: Superset installed in its own venv, set up in a temporary home on the
snapshot the real graph publishes (`serving/snapshot`), served for real, then checked through its
REST API (dashboards, every chart's data, column descriptions, SQL Lab on every served table, a
newly published snapshot seen without a restart) and in headless Chromium (every dashboard
renders charts, no error panels; screenshots kept under $MARKETFLOW_TEST_ARTIFACTS, default
`test_artifacts/bi`).

Kept lean (the whole suite must stay under 10 minutes on 2 cores): three tickers over the fewest
sessions that give every chart rows (252 for the 52-week range, a golden cross after SMA 200's
warm-up), the dashboards opened in parallel tabs, no fixed sleeps. Superset's venv
(`.venv-superset`, ~2-3 min to build on a fresh machine) is made once by `make bi-install`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests

from marketflow_assets import cadence
from marketflow_assets.assets.serving import SNAPSHOT_KEY
from marketflow_assets.bi.bundle import DATABASE_NAME, load_bundle
from marketflow_assets.bi.served import SERVED_TABLES
from marketflow_assets.bi.superset import REPO
from marketflow_assets.calendar import xnys
from marketflow_assets.serving.columns import served_table
from marketflow_assets.settings import Settings
from marketflow_tests.helpers import FRIDAY_EVENING, make_settings, materialize

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bi_superset")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOLDER = "[data-test='dashboard-component-chart-holder']"
ERROR = ".ant-alert-error, .missing-chart-container, [data-test='error-tooltip']"
DRAWN = ".chart-container canvas, .chart-container table, .chart-container .header-line"
# A filtered chart may legitimately have nothing to show (e.g. no anomalies for one ticker).
EMPTY = "No results were returned for this query"
# Per chart holder: "ok" when it shows a chart and no error panel, else what it shows.
VERDICTS = f"""holder => [...document.querySelectorAll(holder)].map(h => {{
  const title = (h.querySelector('[data-test="editable-title"], .header-title') || h).innerText
    .split('\\n')[0];
  if (h.querySelector("{ERROR}")) return 'error panel in ' + title + ': ' + h.innerText.slice(0, 300);
  if (!h.querySelector("{DRAWN}") && !h.innerText.includes("{EMPTY}"))
    return 'nothing drawn in ' + title;
  return 'ok';
}})"""
DONE = f"""holder => [...document.querySelectorAll(holder)].every(
  h => h.querySelector("{DRAWN}") || h.querySelector("{ERROR}")
    || h.innerText.includes("{EMPTY}"))"""
TABLE_ROWS = f"""title => {{
  const h = [...document.querySelectorAll("{HOLDER}")].find(h => h.innerText.startsWith(title));
  return h ? h.querySelectorAll('table tbody tr').length : -1;
}}"""
ARTIFACTS = Path(os.environ.get("MARKETFLOW_TEST_ARTIFACTS", REPO / "test_artifacts")) / "bi"

# The simulator (seed 0) gives CSCO a golden cross within these sessions; three sectors; 100x
# price errors (repaired in silver) and duplicates/bad ticks (rejected) for the data-quality
# dashboard. 262 sessions: the 52-week range needs 252.
BI_TICKERS = "CSCO,KO,META"
BI_SESSIONS = 262
BI_INTRADAY_SESSIONS = 2
BI_FAULTS = "duplicates=0.002,bad_ticks=0.002,price_100x=0.003"
SNAPSHOT = dg.AssetSelection.assets(SNAPSHOT_KEY)
HOURLY_BARS = dg.AssetSelection.assets("gold/hourly_bars")  # a dbt mart: with the daily marts


def publish_bi_snapshot(home: Path) -> Settings:
    """What `make demo` does, smaller: the intraday path over the last sessions, then everything
    the snapshot serves over BI_SESSIONS (the hourly mart in the same run: one dbt invocation),
    then `serving/snapshot` publishes it."""
    settings = make_settings(home, tickers=BI_TICKERS, simulator_faults=BI_FAULTS)
    cal = xnys()
    last = cal.latest_closed_session(FRIDAY_EVENING)
    intraday_first = cal.offset(last, -(BI_INTRADAY_SESSIONS - 1))
    served = SNAPSHOT.upstream() - SNAPSHOT
    materialize(
        settings,
        select=served & cadence.intraday_assets - HOURLY_BARS,
        partition_range=(str(intraday_first), str(last)),
    )
    first = cal.offset(last, -(BI_SESSIONS - 1))
    materialize(
        settings,
        select=served - cadence.intraday_assets | HOURLY_BARS,
        partition_range=(str(first), str(last)),
    )
    materialize(settings, select=SNAPSHOT)
    return settings


class _ChartQueries:
    """Counts the page's chart data requests in flight."""

    def __init__(self, page):
        self.page = page
        self.count = 0
        page.on("request", lambda r: self._change(r, 1))
        page.on("requestfinished", lambda r: self._change(r, -1))
        page.on("requestfailed", lambda r: self._change(r, -1))

    def _change(self, request, delta: int) -> None:
        if "/api/v1/chart/data" in request.url:
            self.count += delta

    def wait_quiet(self, seconds: float, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
            if self.count:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= seconds:
                return
        raise AssertionError("chart queries still running after the timeout")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bi(env: dict[str, str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marketflow_assets.bi", command],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def superset_venv() -> Path:
    """`make bi-install`: a no-op once the venv matches bi/constraints.txt. MARKETFLOW_BI_VENV
    moves it (the Makefile's variable, e.g. a CI cache), as it does for `make bi`."""
    subprocess.run(["make", "-s", "bi-install"], cwd=REPO, check=True, timeout=1200)
    return Path(os.environ.get("MARKETFLOW_BI_VENV") or REPO / ".venv-superset")


@pytest.fixture(scope="module")
def bi_home(tmp_path_factory, superset_venv):
    """A home with a published snapshot, set up by `python -m marketflow_assets.bi setup`, then
    again (the re-run only re-imports the bundle, and must change nothing: same password, no
    duplicate objects)."""
    home = tmp_path_factory.mktemp("bi") / "home"
    settings = publish_bi_snapshot(home)
    env = dict(os.environ, MARKETFLOW_HOME=str(home), MARKETFLOW_BI_VENV=str(superset_venv))
    env.pop("MARKETFLOW_BI_ADMIN_PASSWORD", None)
    first = _bi(env, "setup")
    assert first.returncode == 0, first.stderr + first.stdout
    password = (home / "bi" / "admin_password").read_text().strip()
    assert password in first.stdout  # generated once and printed
    second = _bi(env, "setup")
    assert second.returncode == 0, second.stderr + second.stdout
    assert password not in second.stdout  # not generated again
    assert (home / "bi" / "admin_password").read_text().strip() == password
    return settings, env, password


@pytest.fixture(scope="module")
def superset(bi_home):
    settings, env, password = bi_home
    port = _free_port()
    log = (settings.home / "bi" / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketflow_assets.bi", "serve"],
        env=env | {"MARKETFLOW_BI_PORT": str(port)},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if requests.get(f"{base}/health", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or still starting
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(
                "Superset did not start:\n" + (settings.home / "bi" / "server.log").read_text()
            )
        time.sleep(1)
    try:
        yield base, settings, password
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def api(superset):
    """A logged-in REST session (JWT for reads, session cookie + CSRF token for SQL Lab)."""
    base, _, password = superset
    session = requests.Session()
    login = session.post(
        f"{base}/api/v1/security/login",
        json={"username": "admin", "password": password, "provider": "db", "refresh": False},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    csrf = session.get(f"{base}/api/v1/security/csrf_token/", timeout=30)
    session.headers["X-CSRFToken"] = csrf.json()["result"]
    session.headers["Referer"] = base
    return base, session


def _get(api, path: str, **params) -> dict:
    base, session = api
    response = session.get(f"{base}{path}", params=params, timeout=120)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def _sql(api, database_id: int, sql: str) -> list[dict]:
    base, session = api
    response = session.post(
        f"{base}/api/v1/sqllab/execute/",
        json={"database_id": database_id, "sql": sql, "runAsync": False},
        timeout=120,
    )
    assert response.status_code == 200, f"SQL Lab {sql!r}: {response.text}"
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def _database_id(api) -> int:
    dbs = _get(api, "/api/v1/database/")["result"]
    return next(d["id"] for d in dbs if d["database_name"] == DATABASE_NAME)


def test_every_dashboard_and_chart_of_the_bundle_exists_once(api):
    bundle = load_bundle()
    dashboards = _get(api, "/api/v1/dashboard/", q="(page_size:100)")["result"]
    assert sorted(d["slug"] for d in dashboards) == sorted(d.slug for d in bundle.dashboards)
    charts = _get(api, "/api/v1/chart/", q="(page_size:100)")["result"]
    # Set up twice: every chart once, none duplicated.
    assert sorted(c["slice_name"] for c in charts) == sorted(c.title for c in bundle.charts)
    datasets = _get(api, "/api/v1/dataset/", q="(page_size:100)")["result"]
    assert sorted(d["table_name"] for d in datasets) == sorted(bundle.datasets)


def test_dataset_columns_carry_the_contract_descriptions(api):
    """Every column of every physical dataset, as Superset serves it, has its contract's
    description (what the dataset editor, the chart builder and SQL Lab's dataset view show)."""
    datasets = _get(api, "/api/v1/dataset/", q="(page_size:100)")["result"]
    missing = []
    for dataset in datasets:
        if not dataset["schema"]:
            continue  # virtual: its columns come from several tables
        table = f"{dataset['schema']}.{dataset['table_name']}"
        columns = _get(api, f"/api/v1/dataset/{dataset['id']}")["result"]["columns"]
        contract = served_table(table)
        assert {c["column_name"] for c in columns} == {c.name for c in contract.columns}, table
        missing += [
            f"{table}.{c['column_name']}"
            for c in columns
            if c["description"] != contract.column(c["column_name"]).description
        ]
    assert not missing, f"columns without their contract description: {missing}"


def test_sql_lab_lists_the_served_tables_with_column_descriptions(api):
    """SQL Lab's schema browser: the snapshot lists exactly the served tables, and a column's
    metadata carries the contract description the publisher wrote as a DuckDB comment."""
    database_id = _database_id(api)
    listed = set()
    for schema in ("silver", "gold", "ops"):
        tables = _get(
            api, f"/api/v1/database/{database_id}/tables/", q=f"(schema_name:{schema},force:!t)"
        )["result"]
        listed |= {f"{schema}.{t['value']}" for t in tables}
    assert listed == set(SERVED_TABLES)
    rows = _sql(
        api,
        database_id,
        "SELECT comment FROM duckdb_columns() WHERE schema_name = 'silver' "
        "AND table_name = 'bar_repairs' AND column_name = 'kind'",
    )
    assert rows[0]["comment"] == served_table("silver.bar_repairs").column("kind").description


def test_every_chart_query_returns_rows_without_error(api):
    failures = []
    for dashboard in load_bundle().dashboards:
        charts = _get(api, f"/api/v1/dashboard/{dashboard.slug}/charts")["result"]
        assert len(charts) == len(dashboard.charts), dashboard.slug
        for chart in charts:
            base, session = api
            response = session.get(f"{base}/api/v1/chart/{chart['id']}/data/", timeout=120)
            name = f"{dashboard.title} / {chart['slice_name']}"
            if response.status_code != 200:
                failures.append(f"{name}: HTTP {response.status_code} {response.text[:300]}")
                continue
            result = response.json()["result"][0]
            if result.get("error") or not result.get("rowcount"):
                failures.append(f"{name}: error={result.get('error')} rows={result['rowcount']}")
    assert not failures, "\n".join(failures)


def test_sql_lab_queries_every_served_table(api):
    database_id = _database_id(api)
    for table in SERVED_TABLES:
        rows = _sql(api, database_id, f"SELECT count(*) AS n FROM {table}")
        assert rows[0]["n"] > 0, f"{table} is empty in the snapshot"


def test_dashboards_render_in_headless_chromium(superset):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package `chromium`; .ci/run installs it)")
    base, _, password = superset
    problems = check_dashboards_in_chromium(base, password, ARTIFACTS)
    assert not problems, "\n".join(problems)


def test_a_newly_published_snapshot_shows_without_restarting(api, superset):
    """The serving database is opened per query (NullPool, read-only): after the real publisher
    switches `current.duckdb` to a new snapshot, the next query sees it. Runs last: it changes
    the warehouse (a ticker's bars deleted) and publishes that."""
    _, settings, _ = superset
    database_id = _database_id(api)
    query = "SELECT count(DISTINCT ticker) AS n FROM silver.daily_bars"
    before = _sql(api, database_id, query)[0]["n"]
    con = duckdb.connect(str(settings.warehouse))
    con.execute("DELETE FROM silver.daily_bars WHERE ticker = 'KO'")
    con.close()
    # The delete bypassed the warehouse's writer (and its change journal): publish from scratch,
    # as the README says to after changing the warehouse by hand.
    rebuild = {"ops": {"serving__snapshot": {"config": {"full_rebuild": True}}}}
    materialize(settings, select=SNAPSHOT, run_config=rebuild)
    assert _sql(api, database_id, query)[0]["n"] == before - 1


SETTLE_MS = 360_000


LOGIN_ATTEMPTS = 3


def _log_in(context, base: str, password: str) -> None:
    """Log in through Superset's login page, as a user does. The page is only submitted once
    it is idle: its form gets its CSRF token from a request of its own, and a form submitted
    before that (once, on a loaded machine) came back to the login page. Should a submission
    still come back there, it is tried again, and the third failure fails the test."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = context.new_page()
    for attempt in range(1, LOGIN_ATTEMPTS + 1):
        page.goto(f"{base}/login/", wait_until="networkidle", timeout=120_000)
        page.fill("input[name=username], #username", "admin")
        page.fill("input[name=password], #password", password)
        page.keyboard.press("Enter")
        try:
            page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
            break
        except PlaywrightTimeout:
            if attempt == LOGIN_ATTEMPTS:
                raise AssertionError(
                    f"Superset's login still at {page.url} after {attempt} attempts"
                ) from None
    page.close()


def check_dashboards_in_chromium(base: str, password: str, artifacts: Path) -> list[str]:
    """Log in, open every dashboard in its own tab at once (Superset answers their chart queries
    in parallel), wait until each settles, keep a screenshot, and return what is wrong (error
    panels, charts that drew nothing, a ticker filter that did not apply)."""
    from playwright.sync_api import sync_playwright

    artifacts.mkdir(parents=True, exist_ok=True)
    problems = []
    dashboards = load_bundle().dashboards
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        # Tall enough for a whole dashboard: a full-page screenshot would resize the viewport,
        # and Superset redraws its grid on resize (the capture came out blank).
        context = browser.new_context(viewport={"width": 1600, "height": 2200})
        _log_in(context, base, password)
        tabs = []
        for dashboard in dashboards:
            page = context.new_page()
            inflight = _ChartQueries(page)
            page.goto(f"{base}/superset/dashboard/{dashboard.slug}/", wait_until="commit")
            tabs.append((dashboard, page, inflight))
        for dashboard, page, inflight in tabs:
            # Generous: five dashboards load Superset's frontend and run their chart queries at
            # once on one gunicorn worker, while the other test worker loads both cores (a full
            # suite once took over 180 s here); a dashboard that never draws still fails.
            page.wait_for_function(
                f'document.querySelectorAll("{HOLDER}").length >= {len(dashboard.charts)}',
                timeout=SETTLE_MS,
            )
            # Settled: every chart drawn (or failed) and no chart query in flight for a moment
            # (native filter defaults re-query the charts they apply to).
            page.wait_for_function(DONE, arg=HOLDER, timeout=SETTLE_MS)
            inflight.wait_quiet(seconds=1)
            page.wait_for_function(DONE, arg=HOLDER, timeout=SETTLE_MS)
            page.screenshot(path=str(artifacts / f"{dashboard.slug}.png"))
            verdicts = page.evaluate(VERDICTS, HOLDER)
            problems += [f"{dashboard.slug}: {v}" for v in verdicts if v != "ok"]
            if dashboard.slug == "ticker":
                # The Ticker filter (first ticker by default) applies: one row on the latest
                # session, not the whole universe.
                rows = page.evaluate(TABLE_ROWS, "Latest session")
                if rows != 1:
                    problems.append(f"ticker: 'Latest session' shows {rows} rows, not 1")
        browser.close()
    return problems
