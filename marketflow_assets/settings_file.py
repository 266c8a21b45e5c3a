"""`$MARKETFLOW_HOME/settings.toml`: a deployment's settings on disk, under the environment.

One flat TOML table whose keys are the MARKETFLOW_* variable names without the prefix, in lower
case (`source = "simulator"` is `MARKETFLOW_SOURCE=simulator`). `Settings.from_env` reads it
first and lets every non-empty environment variable override it, so whatever loads Settings
(`make dev`, `make serve`, the `dagster` CLI, `make demo`) sees the same deployment without
exporting anything. `make demo` writes the source it built (simulator, seed, clock, tickers,
start date) here, which is how the UI opened afterwards works on the demo's data.

Secrets never go in this file: the Slack webhook and the SMTP login are read by the resources
from the environment only (`dg.EnvVar`).
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "settings.toml"
PREFIX = "MARKETFLOW_"
# Where the file lives, so it cannot itself set where it lives.
NOT_IN_FILE = ("MARKETFLOW_HOME",)
SECRETS = (
    "MARKETFLOW_SLACK_WEBHOOK_URL",
    "MARKETFLOW_SMTP_USER",
    "MARKETFLOW_SMTP_PASSWORD",
)


class SettingsFileError(ValueError):
    """The settings file cannot be used; the message names the file and the key."""


def settings_path(home: Path) -> Path:
    return home / FILE_NAME


def variable_name(key: str) -> str:
    return PREFIX + key.upper()


def read_settings_file(path: Path) -> dict[str, str]:
    """The file as environment variables ({"MARKETFLOW_SOURCE": "simulator"}); {} if absent.

    Values may be strings, numbers, booleans, dates or lists (joined with commas, as for
    `tickers`). Nested tables, the home and secrets are refused with the key named."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"{path}: not valid TOML ({exc})") from exc
    variables = {}
    for key, value in table.items():
        name = variable_name(key)
        if name in NOT_IN_FILE:
            raise SettingsFileError(f"{path}: `{key}` cannot be set in the file it locates")
        if name in SECRETS:
            raise SettingsFileError(
                f"{path}: `{key}` is a secret; set {name} in the environment instead"
            )
        variables[name] = _as_text(path, key, value)
    return variables


def write_settings_file(path: Path, values: Mapping[str, object], header: str) -> Path:
    """Write `values` (keys as in the file) atomically, each as a TOML string or number."""
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()]
    for key, value in values.items():
        text = value if isinstance(value, int | float) else json.dumps(str(value))
        lines.append(f"{key} = {text}")
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text("\n".join(lines) + "\n", encoding="utf-8")
    staged.replace(path)
    return path


def _as_text(path: Path, key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | dt.date | dt.datetime | dt.time):
        return value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise SettingsFileError(
        f"{path}: `{key}` must be a string, number, boolean, date or list of strings, "
        f"not {type(value).__name__}"
    )
