"""Alerts: a failed run and a failed blocking check each write an ops.alert_history row and reach
a Slack webhook (a local HTTP server) and email; secrets never show up; a busy warehouse delays
the row, never loses it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from marketflow_assets.automation.alerts import flush_outbox
from marketflow_assets.definitions import build_definitions
from marketflow_assets.resources import alerting as notify
from marketflow_tests.automation_support import tick_sensor
from marketflow_tests.checks_support import DAILY, SILVER, execute, run_checks
from marketflow_tests.helpers import deployment_event_log_instance, materialize, query

SECRET = "T0000/B0000/s3cr3t-t0k3n"
HOLD_WAREHOUSE = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
    "print('holding', flush=True); time.sleep(60)"
)


class Webhook:
    """A Slack incoming webhook on loopback: records the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200):
        received = self.received = []
        self.status = status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):
                length = int(handler.headers["Content-Length"])
                received.append((handler.path, json.loads(handler.rfile.read(length))))
                handler.send_response(self.status)
                handler.end_headers()
                handler.wfile.write(b"ok")

            def log_message(handler, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/services/{SECRET}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class FakeSMTP:
    sent: list = []

    def __init__(self, host, port, timeout=None):
        self.host, self.port = host, port
        self.logged_in = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starttls(self, context=None):
        pass

    def login(self, user, password):
        self.logged_in = (user, password)

    def send_message(self, message):
        FakeSMTP.sent.append((self.host, self.port, self.logged_in, message))


@pytest.fixture
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture
def webhook():
    with Webhook() as hook:
        yield hook


@pytest.fixture
def alerting(settings, webhook, monkeypatch):
    """Slack and email configured through the environment, as in a deployment."""
    monkeypatch.setenv("MARKETFLOW_SLACK_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("MARKETFLOW_SMTP_USER", "alerts-bot")
    monkeypatch.setenv("MARKETFLOW_SMTP_PASSWORD", "hunter2-smtp")
    monkeypatch.setattr(notify.smtplib, "SMTP", FakeSMTP)
    FakeSMTP.sent = []
    return dataclasses.replace(
        settings,
        slack_webhook_configured=True,
        smtp_login_configured=True,
        alert_email_to="oncall@example.com, data@example.com",
        smtp_host="smtp.example.com",
        smtp_port=2525,
    )


def alert_rows(settings):
    return query(settings, "SELECT * FROM ops.alert_history ORDER BY created_at")


def assert_no_secret(*texts):
    for text in texts:
        assert SECRET not in str(text)
        assert "hunter2-smtp" not in str(text)


def test_a_failed_run_is_recorded_and_sent_to_slack_and_email(alerting, instance, webhook, capfd):
    start = tick_sensor(alerting, "run_failure_alerts", instance)  # initializes the cursor
    failed = materialize(
        alerting,
        select=["raw/daily_bars"],
        partition="2024-06-03",
        tickers=["NOT A TICKER"],
        instance=instance,
        raise_on_error=False,
    )
    assert not failed.success
    tick_sensor(alerting, "run_failure_alerts", instance, start.cursor)

    (row,) = alert_rows(alerting).itertuples()
    assert row.kind == "run_failure" and row.severity == "ERROR"
    assert row.run_id == failed.run_id
    assert "raw__daily_bars" in row.detail and "NOT A TICKER" in row.detail
    assert row.asset_key == "raw/daily_bars"
    assert row.scope.startswith("2024-06-03")
    assert row.delivered_to == "slack,email"
    assert row.delivery_errors is None

    ((path, body),) = webhook.received
    assert path.endswith(SECRET)
    assert "Run failed" in body["text"] and failed.run_id in body["text"]
    ((host, port, login, message),) = FakeSMTP.sent
    assert (host, port, login) == ("smtp.example.com", 2525, ("alerts-bot", "hunter2-smtp"))
    assert message["To"] == "oncall@example.com, data@example.com"
    assert message["Subject"].startswith("[MarketFlow ERROR] Run failed")

    out, err = capfd.readouterr()
    assert_no_secret(*row, out, err)
    # The resource config shows where secrets come from, not their values.
    alerting_config = build_definitions(alerting).resources["alerting"]
    assert isinstance(alerting_config.slack_webhook_url, dg.EnvVar)
    assert isinstance(alerting_config.smtp_password, dg.EnvVar)


def test_a_failed_blocking_check_raises_an_alert(alerting, instance, webhook):
    materialize(alerting, select=DAILY, partition="2024-06-03")
    start = tick_sensor(alerting, "check_failure_alerts", instance)
    assert "watching check evaluations" in start.skip_message
    # A duplicated row breaks silver's keys (a blocking ERROR check).
    execute(
        alerting,
        "INSERT INTO silver.daily_bars SELECT * FROM silver.daily_bars WHERE ticker = 'AAPL'",
    )
    result = run_checks(alerting, SILVER, partition="2024-06-03", instance=instance)
    assert not all(e.passed for e in result.get_asset_check_evaluations())
    data = tick_sensor(alerting, "check_failure_alerts", instance, start.cursor)
    assert "alert(s) raised" in data.skip_message

    rows = alert_rows(alerting)
    keys = rows[rows["check_name"] == "keys"]
    (row,) = keys.itertuples()
    assert row.kind == "check_failure" and row.severity == "ERROR"
    assert row.asset_key == "silver/daily_bars" and row.scope == "2024-06-03"
    assert row.run_id == result.run_id
    assert "blocking" in row.title and "failing_rows" in row.detail
    assert any("keys" in body["text"] for _, body in webhook.received)
    assert_no_secret(*rows.to_numpy().ravel())

    # Idempotent: the next tick raises nothing new.
    again = tick_sensor(alerting, "check_failure_alerts", instance, data.cursor)
    assert "no run finished" in again.skip_message
    assert len(alert_rows(alerting)) == len(rows)


def test_undeliverable_channels_are_recorded_without_secrets(settings, instance, monkeypatch):
    with Webhook(status=500) as broken:
        monkeypatch.setenv("MARKETFLOW_SLACK_WEBHOOK_URL", broken.url)
        configured = dataclasses.replace(settings, slack_webhook_configured=True)
        start = tick_sensor(configured, "run_failure_alerts", instance)
        materialize(
            configured,
            select=["raw/daily_bars"],
            partition="2024-06-03",
            tickers=["BAD TICKER"],
            instance=instance,
            raise_on_error=False,
        )
        tick_sensor(configured, "run_failure_alerts", instance, start.cursor)
    (row,) = alert_rows(configured).itertuples()
    assert row.delivered_to is None
    assert row.delivery_errors == "slack: RuntimeError: Slack answered HTTP 500"
    assert_no_secret(*row)


def test_a_busy_warehouse_delays_the_alert_row_never_loses_it(settings, instance):
    start = tick_sensor(settings, "run_failure_alerts", instance)
    materialize(
        settings,
        select=["raw/daily_bars"],
        partition="2024-06-03",
        tickers=["BAD TICKER"],
        instance=instance,
        raise_on_error=False,
    )
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    # Another process holds the warehouse, as a run writing to it does.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAREHOUSE, str(settings.warehouse)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        tick_sensor(settings, "run_failure_alerts", instance, start.cursor)
        outbox = settings.home / "alerts" / "outbox"
        assert len(list(outbox.glob("*.json"))) == 1
    finally:
        holder.kill()
        holder.wait()
    # The next check-alert tick writes what waited.
    tick_sensor(settings, "check_failure_alerts", instance)
    assert len(alert_rows(settings)) == 1
    assert not list(outbox.glob("*.json"))
    # Writing the same alert again adds no row.
    resources = build_definitions(settings).resources
    (outbox / "again.json").write_text(
        json.dumps(
            {**alert_rows(settings).iloc[0].to_dict(), "created_at": "2024-06-03T00:00:00+00:00"},
            default=str,
        )
    )
    assert flush_outbox(resources["alerting"], resources["warehouse"], dg.get_dagster_logger()) == 1
    assert len(alert_rows(settings)) == 1


def test_alert_settings_hold_no_secret_and_reject_half_configurations():
    from marketflow_assets.settings import ConfigError, Settings

    env = {
        "MARKETFLOW_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/{SECRET}",
        "MARKETFLOW_ALERT_EMAIL_TO": "oncall@example.com",
        "MARKETFLOW_SMTP_HOST": "smtp.example.com",
        "MARKETFLOW_SMTP_USER": "alerts-bot",
        "MARKETFLOW_SMTP_PASSWORD": "hunter2-smtp",
        "MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS": "10",
    }
    settings = Settings.from_env(env)
    assert settings.slack_webhook_configured and settings.smtp_login_configured
    assert settings.catch_up_lookback_sessions == 10
    assert_no_secret(repr(settings))
    for broken, named in (
        ({"MARKETFLOW_SMTP_USER": "u"}, "MARKETFLOW_SMTP_PASSWORD"),
        ({"MARKETFLOW_ALERT_EMAIL_TO": "a@b.c"}, "MARKETFLOW_SMTP_HOST"),
        ({"MARKETFLOW_SMTP_TLS": "maybe"}, "MARKETFLOW_SMTP_TLS"),
        ({"MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS": "0"}, "MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS"),
    ):
        with pytest.raises(ConfigError, match=named):
            Settings.from_env(broken)
