"""Where alerts go: a Slack incoming webhook and/or email (smtplib), configured by environment.

| variable | meaning |
| --- | --- |
| `MARKETFLOW_SLACK_WEBHOOK_URL` | Slack incoming-webhook URL (secret) |
| `MARKETFLOW_ALERT_EMAIL_TO` | comma-separated recipients; needs `MARKETFLOW_SMTP_HOST` |
| `MARKETFLOW_SMTP_HOST`, `MARKETFLOW_SMTP_PORT` | mail server (port 587 by default) |
| `MARKETFLOW_SMTP_USER`, `MARKETFLOW_SMTP_PASSWORD` | login (secrets), optional |
| `MARKETFLOW_SMTP_FROM` | sender (default `marketflow@<host>`) |
| `MARKETFLOW_SMTP_TLS` | `starttls` (default), `ssl` or `none` |

Secrets reach the resource through `dg.EnvVar` (see `resources.build_resources`): the UI shows
the variable's name, never its value, and every text this module returns or logs has the secret
values masked, plus credential-shaped text (`marketflow_assets/redaction.py`), since run-failure
alerts quote step errors. Slack text is escaped (`<!channel>` in a file name is shown, not
sent as a mention). A login over `MARKETFLOW_SMTP_TLS=none` is refused: the password would cross
the network in clear.

Lives with the other resources (`marketflow_assets.resources`): delivery is I/O, below the
sensors that decide what to send (`automation/alerts.py`).
"""

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

import dagster as dg
from pydantic import Field

from marketflow_assets.redaction import redact, slack_escape

SLACK = "slack"
EMAIL = "email"


class AlertingResource(dg.ConfigurableResource):
    """Alert channels: Slack webhook and/or email. Unset fields disable the channel."""

    slack_webhook_url: str | None = Field(
        default=None, description="Slack incoming webhook (secret)."
    )
    email_to: str | None = Field(default=None, description="Comma-separated recipients.")
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = Field(default=None, description="SMTP login (secret).")
    smtp_password: str | None = Field(default=None, description="SMTP password (secret).")
    smtp_from: str | None = None
    smtp_tls: str = "starttls"
    timeout_seconds: float = 10.0
    outbox_dir: str = ".marketflow/alerts/outbox"
    """Alert rows not yet written to the warehouse (it was busy); flushed on later ticks."""

    def channels(self) -> list[str]:
        out = []
        if self.slack_webhook_url:
            out.append(SLACK)
        if self.email_to and self.smtp_host:
            out.append(EMAIL)
        return out

    def redact(self, text: str) -> str:
        """`text` with every configured secret and credential-shaped substring replaced by ***."""
        return redact(text, (self.slack_webhook_url, self.smtp_password, self.smtp_user))

    def send(self, severity: str, title: str, body: str) -> tuple[list[str], list[str]]:
        """Deliver to every configured channel; returns (channels that accepted, errors)."""
        delivered, errors = [], []
        for channel, deliver in ((SLACK, self._slack), (EMAIL, self._email)):
            if channel not in self.channels():
                continue
            try:
                deliver(severity, title, body)
                delivered.append(channel)
            except Exception as exc:  # a channel down must not stop the others
                errors.append(self.redact(f"{channel}: {type(exc).__name__}: {exc}"))
        return delivered, errors

    def _slack(self, severity: str, title: str, body: str) -> None:
        icon = ":red_circle:" if severity == "ERROR" else ":warning:"
        message = {"text": f"{icon} *[{severity}] {slack_escape(title)}*\n{slack_escape(body)}"}
        request = urllib.request.Request(
            self.slack_webhook_url or "",
            data=json.dumps(message).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                if response.status >= 300:
                    raise RuntimeError(f"Slack answered HTTP {response.status}")
        except urllib.error.HTTPError as exc:  # its str() holds no URL, but be explicit
            raise RuntimeError(f"Slack answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise RuntimeError(f"Slack unreachable ({exc.reason})") from None

    def _email(self, severity: str, title: str, body: str) -> None:
        message = EmailMessage()
        message["Subject"] = f"[MarketFlow {severity}] {title}"
        message["From"] = self.smtp_from or f"marketflow@{self.smtp_host}"
        message["To"] = ", ".join(a.strip() for a in (self.email_to or "").split(",") if a.strip())
        message.set_content(body)
        if self.smtp_user and self.smtp_tls == "none":
            raise RuntimeError(
                "refusing SMTP login with MARKETFLOW_SMTP_TLS=none (the password would be sent "
                "in clear); use starttls or ssl"
            )
        host, port, timeout = self.smtp_host or "", self.smtp_port, self.timeout_seconds
        if self.smtp_tls == "ssl":
            client = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if self.smtp_tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if self.smtp_user:
                client.login(self.smtp_user, self.smtp_password or "")
            client.send_message(message)
