"""Secrets and hostile text in alerts and tickers: credentials quoted by a step error are masked
in Slack, email and ops.alert_history; dropped file names cannot mention @channel; an SMTP login
never goes over a clear connection; look-alike tickers are refused."""

from __future__ import annotations

import dataclasses
import logging

import dagster as dg
import pytest

from marketflow_assets.automation.alerts import Alert, raise_alerts
from marketflow_assets.definitions import build_definitions
from marketflow_assets.redaction import redact
from marketflow_assets.resources import alerting as notify
from marketflow_assets.settings import ConfigError, Settings
from marketflow_assets.tickers import InvalidTickerError, validate_ticker
from marketflow_tests.helpers import query
from marketflow_tests.test_automation_alerts import FakeSMTP, Webhook

DB_PASSWORD = "hunter3-db-pass"
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
STEP_ERROR = (
    "raw__daily_bars: could not connect to postgresql://etl:"
    + DB_PASSWORD
    + "@db.internal:5432/market\n"
    + "request headers: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu\n"
    + "boto: AKIAIOSFODNN7EXAMPLE "
    + AWS_SECRET
    + " api_key=sk_live_51Habcdef\n"
    + "file landing/<!channel>.csv rejected"
)


@pytest.fixture
def channels(settings, monkeypatch):
    with Webhook() as hook:
        monkeypatch.setenv("MARKETFLOW_SLACK_WEBHOOK_URL", hook.url)
        monkeypatch.setenv("MARKETFLOW_SMTP_USER", "alerts-bot")
        monkeypatch.setenv("MARKETFLOW_SMTP_PASSWORD", "hunter2-smtp")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        monkeypatch.setattr(notify.smtplib, "SMTP", FakeSMTP)
        FakeSMTP.sent = []
        configured = dataclasses.replace(
            settings,
            slack_webhook_configured=True,
            smtp_login_configured=True,
            alert_email_to="oncall@example.com",
            smtp_host="smtp.example.com",
        )
        yield configured, hook


def test_credentials_in_a_step_error_are_masked_everywhere(channels):
    settings, hook = channels
    defined = build_definitions(settings).resources
    alert = Alert(
        kind="run_failure",
        severity="ERROR",
        title="Run failed: raw__daily_bars [landing/<!channel>.csv]",
        detail=STEP_ERROR,
        run_id="r1",
    )
    wanted = {k: defined[k] for k in ("alerting", "warehouse")}
    with dg.build_resources(wanted) as resources:  # EnvVars resolved as in a sensor
        raise_alerts([alert], resources.alerting, resources.warehouse, logging.getLogger("t"))

    row = query(settings, "SELECT title, detail, delivered_to FROM ops.alert_history").iloc[0]
    ((_, slack),) = hook.received
    ((*_, email),) = FakeSMTP.sent
    texts = {"alert_history": row["detail"], "slack": slack["text"], "email": email.get_content()}
    for where, text in texts.items():
        for secret in (DB_PASSWORD, AWS_SECRET, "AKIAIOSFODNN7EXAMPLE", "sk_live_51Habcdef"):
            assert secret not in text, f"{secret} reached {where}"
        assert "c2VjcmV0LXRva2Vu" not in text, where
        assert "postgresql://etl:***@db.internal" in text, where  # still says what failed
    assert row["delivered_to"] == "slack,email"
    # Slack shows the name, it never pings the channel.
    assert "<!channel>" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]
    assert "<!channel>" in email["Subject"]  # plain text elsewhere: shown as written


def test_redaction_leaves_ordinary_text_alone():
    text = "no data for 2 ticker(s): AAPL: yfinance returned no 1d bars; token count 3"
    assert redact("AAPL failed at 2024-06-03: High inf above Low") == (
        "AAPL failed at 2024-06-03: High inf above Low"
    )
    assert redact(text).startswith("no data for 2 ticker(s): AAPL: yfinance returned no 1d bars")


def test_smtp_login_over_a_clear_connection_is_refused(channels):
    env = {
        "MARKETFLOW_ALERT_EMAIL_TO": "oncall@example.com",
        "MARKETFLOW_SMTP_HOST": "smtp.example.com",
        "MARKETFLOW_SMTP_USER": "alerts-bot",
        "MARKETFLOW_SMTP_PASSWORD": "hunter2-smtp",
        "MARKETFLOW_SMTP_TLS": "none",
    }
    with pytest.raises(ConfigError, match="MARKETFLOW_SMTP_TLS=none"):
        Settings.from_env(env)
    # Without a login, a clear connection is allowed (an internal relay).
    relay = {k: v for k, v in env.items() if "USER" not in k and "PASSWORD" not in k}
    assert Settings.from_env(relay).smtp_tls == "none"
    # The resource refuses too, whatever configured it.
    resource = notify.AlertingResource(
        email_to="oncall@example.com",
        smtp_host="smtp.example.com",
        smtp_user="alerts-bot",
        smtp_password="hunter2-smtp",
        smtp_tls="none",
    )
    delivered, errors = resource.send("ERROR", "t", "b")
    assert delivered == [] and "refusing SMTP login" in errors[0]
    assert "hunter2-smtp" not in errors[0] and FakeSMTP.sent == []


@pytest.mark.parametrize(
    "symbol",
    ["msf\u0131", "stra\u00dfe", "\u0410APL", "\uff21\uff21\uff30\uff2c", "AAPL\u200b", "A" * 500],
    ids=["dotless_i", "sharp_s", "cyrillic_a", "fullwidth", "zero_width", "500_chars"],
)
def test_non_ascii_and_look_alike_tickers_are_refused(symbol):
    with pytest.raises(InvalidTickerError, match="invalid ticker") as info:
        validate_ticker(symbol, origin="test")
    assert len(str(info.value)) < 400  # a 500-character symbol is cut in the message
    assert validate_ticker(" brk-b ") == "BRK-B"  # ASCII is still normalised
