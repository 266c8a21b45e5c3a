"""Masking credentials in text that leaves the platform (alerts, alert history, logs).

Two layers: the values of secrets the platform knows (configured webhook, SMTP login, and any
environment variable whose name says it holds a secret), and credential shapes in free text
(`password=...`, `user:pass@host`, `Bearer ...`, AWS access keys), because a run-failure alert
forwards step errors that may quote a connection string or a header.

Imports nothing from the project, so any module can use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|WEBHOOK|CREDENTIAL")
_PATTERNS = (
    # Authorization: Bearer/Basic <token>
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)([A-Za-z0-9._~+/=-]{8,})"),
    # key=value / key: value for credential-like keys (also in JSON and query strings)
    re.compile(
        r"""(?ix)
        (\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)[\w.-]*
         ["']?\s*[:=]\s*["']?)
        ([^\s"'&,;}]+)"""
    ),
    # scheme://user:password@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)"),
    # AWS access key ids
    re.compile(r"()\b((?:AKIA|ASIA)[A-Z0-9]{16})\b"),
    # Slack webhook paths
    re.compile(r"(https://hooks\.slack\.com/services/)([\w/]+)"),
)


def _mask_match(match: re.Match) -> str:
    """Keep the lead-in (`password=`, `scheme://user:`) and any trailer (`@`), mask the rest."""
    return match.group(1) + MASK + (match.group(3) if match.lastindex == 3 else "")


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they hold a secret."""
    env = os.environ if environ is None else environ
    return [
        value
        for name, value in env.items()
        if _SECRET_NAME.search(name.upper()) and len(value) >= MIN_SECRET_LENGTH
    ]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with known secret values and credential-shaped substrings replaced by ***."""
    known = {s for s in (*secrets, *secret_env_values()) if s and len(s) >= 3}
    for secret in sorted(known, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_mask_match, text)
    return text


def slack_escape(text: str) -> str:
    """Text for a Slack message: `&`, `<`, `>` escaped as Slack requires, so names such as
    `<!channel>` or `<https://evil|click>` are shown, never interpreted."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
