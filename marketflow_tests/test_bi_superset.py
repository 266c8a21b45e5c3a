"""`make bi` end to end: Superset installed in its own venv, set up in a temporary home on a
snapshot of a warehouse built by the real graph, served for real, then checked through its REST
API (dashboards, every chart's data, SQL Lab on every served table, a newly published snapshot
seen without a restart) and in headless Chromium (every dashboard renders charts, no error
panels; screenshots kept under $MARKETFLOW_TEST_ARTIFACTS, default `test_artifacts/bi`).

Superset's venv (`.venv-superset`, ~2 min to build) is made once by `make bi-install` and reused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import requests

from marketflow_assets.bi.bundle import DATABASE_NAME, load_bundle
from marketflow_assets.bi.served import SERVED_TABLES
from marketflow_assets.bi.superset import REPO
from marketflow_tests.serving_stand_in import build_bi_warehouse, publish_test_snapshot

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
    """`make bi-install`: a no-op once `.venv-superset` matches bi/constraints.txt."""
    subprocess.run(["make", "-s", "bi-install"], cwd=REPO, check=True, timeout=1200)
    return REPO / ".venv-superset"


@pytest.fixture(scope="module")
def bi_home(tmp_path_factory, superset_venv):
    """A home with a published snapshot, set up twice by `python -m marketflow_assets.bi setup`
    (the second run must change nothing: same password, no duplicate objects)."""
    home = tmp_path_factory.mktemp("bi") / "home"
    settings = build_bi_warehouse(home)
    publish_test_snapshot(settings)
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
    datasets = _get(api, "/api/v1/dataset/", q="(page_size:100)")["result"]
    features = next(d for d in datasets if d["table_name"] == "daily_features")
    columns = _get(api, f"/api/v1/dataset/{features['id']}")["result"]["columns"]
    rsi = next(c for c in columns if c["column_name"] == "rsi_14")
    from marketflow_assets.contracts import CONTRACTS

    expected = " ".join(CONTRACTS["gold.daily_features"].column("rsi_14").description.split())
    assert rsi["description"] == expected


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


def test_a_newly_published_snapshot_shows_without_restarting(api, superset):
    """The serving database is opened per query (NullPool, read-only): after an atomic replace of
    the snapshot file, the next query sees the new one."""
    _, settings, _ = superset
    database_id = _database_id(api)
    query = "SELECT count(DISTINCT ticker) AS n FROM silver.daily_bars"
    before = _sql(api, database_id, query)[0]["n"]
    snapshot = settings.home / "serving" / "current.duckdb"
    staging = snapshot.with_name("next.duckdb")
    shutil.copyfile(snapshot, staging)
    con = duckdb.connect(str(staging))
    con.execute("DELETE FROM silver.daily_bars WHERE ticker = 'TSLA'")
    con.close()
    staging.replace(snapshot)
    try:
        assert _sql(api, database_id, query)[0]["n"] == before - 1
    finally:
        publish_test_snapshot(settings)  # the browser test reads the full snapshot
    assert _sql(api, database_id, query)[0]["n"] == before


def test_dashboards_render_in_headless_chromium(superset):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package `chromium`; .ci/run installs it)")
    base, _, password = superset
    problems = check_dashboards_in_chromium(base, password, ARTIFACTS)
    assert not problems, "\n".join(problems)


def check_dashboards_in_chromium(base: str, password: str, artifacts: Path) -> list[str]:
    """Log in, open every dashboard, wait until it settles, keep a screenshot, and return what
    is wrong (error panels, charts that drew nothing, a ticker filter that did not apply)."""
    from playwright.sync_api import sync_playwright

    artifacts.mkdir(parents=True, exist_ok=True)
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        # Tall enough for a whole dashboard: a full-page screenshot would resize the viewport,
        # and Superset redraws its grid on resize (the capture came out blank).
        page = browser.new_page(viewport={"width": 1600, "height": 2000})
        page.goto(f"{base}/login/")
        page.fill("input[name=username], #username", "admin")
        page.fill("input[name=password], #password", password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
        inflight = _ChartQueries(page)
        for dashboard in load_bundle().dashboards:
            page.goto(f"{base}/superset/dashboard/{dashboard.slug}/")
            page.wait_for_function(
                f'document.querySelectorAll("{HOLDER}").length >= {len(dashboard.charts)}',
                timeout=120_000,
            )
            # Settled: every chart drawn (or failed) and no chart query in flight for a while
            # (native filter defaults re-query the charts they apply to).
            page.wait_for_function(DONE, arg=HOLDER, timeout=120_000)
            inflight.wait_quiet(seconds=3)
            page.wait_for_function(DONE, arg=HOLDER, timeout=120_000)
            page.wait_for_timeout(1000)  # ECharts' entry animation, for the screenshot
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
