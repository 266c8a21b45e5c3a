"""Set up and serve MarketFlow's Superset (`make bi`) on the current serving snapshot.

Superset lives in its own virtualenv (its pins conflict with the project's), built by
`make bi-install` from `bi/constraints.txt`; everything it keeps lives under
`$MARKETFLOW_HOME/bi`: the metadata database, the secret key and the generated admin password.
Each step is idempotent, so `make bi` can run again at any time.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from marketflow_assets.bi.bundle import BI_DIR, load_bundle
from marketflow_assets.bi.served import snapshot_path
from marketflow_assets.settings import ConfigError, Settings

REPO = BI_DIR.parent
DEFAULT_VENV = REPO / ".venv-superset"
DEFAULT_PORT = 8088
ADMIN_USER = "admin"


class BiSetupError(RuntimeError):
    """A step of the Superset set-up failed; the message says which and what to do."""


@dataclass(frozen=True)
class BiConfig:
    settings: Settings
    venv: Path
    port: int
    admin_password_env: str | None

    @classmethod
    def from_env(cls, env=None) -> BiConfig:
        env = os.environ if env is None else env
        port_text = (env.get("MARKETFLOW_BI_PORT") or str(DEFAULT_PORT)).strip()
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"MARKETFLOW_BI_PORT={port_text!r} is not a TCP port")
        return cls(
            settings=Settings.from_env(env),
            venv=Path(env.get("MARKETFLOW_BI_VENV") or DEFAULT_VENV).expanduser(),
            port=int(port_text),
            admin_password_env=env.get("MARKETFLOW_BI_ADMIN_PASSWORD") or None,
        )

    @property
    def home(self) -> Path:
        return self.settings.home.resolve() / "bi"

    @property
    def snapshot(self) -> Path:
        # Not resolved: `current.duckdb` is a symlink to the snapshot file of the moment, switched
        # on every publish; resolving it would pin Superset to one snapshot forever.
        return snapshot_path(self.settings).absolute()

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MARKETFLOW_BI_HOME=str(self.home),
            SUPERSET_CONFIG_PATH=str(BI_DIR / "superset_config.py"),
            FLASK_APP="superset.app:create_app()",
            SUPERSET_LOAD_EXAMPLES="no",
        )
        return env


def _secret_file(path: Path, make) -> str:
    """Read a secret kept under the BI home, creating it (mode 0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def admin_password(config: BiConfig) -> tuple[str, bool]:
    """The admin password, and whether it was generated now. MARKETFLOW_BI_ADMIN_PASSWORD wins;
    otherwise one is generated once and kept in $MARKETFLOW_HOME/bi/admin_password."""
    if config.admin_password_env:
        return config.admin_password_env, False
    path = config.home / "admin_password"
    existed = path.exists()
    return _secret_file(path, lambda: secrets.token_urlsafe(18)), not existed


def _run(config: BiConfig, args: list[str], step: str, extra_env=None) -> None:
    env = config.env() | (extra_env or {})
    result = subprocess.run(args, env=env, cwd=config.home, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise BiSetupError(f"{step} failed (exit {result.returncode}):\n{tail}")


def setup(config: BiConfig, log=print) -> str:
    """Everything `make bi` does before serving; returns the admin password."""
    if not config.bin("superset").exists():
        raise BiSetupError(
            f"Superset is not installed in {config.venv}: run `make bi-install` (or `make bi`)"
        )
    if not config.snapshot.exists():
        raise BiSetupError(
            f"no serving snapshot at {config.snapshot}: publish one first (`make demo` builds "
            "and publishes the demo data)"
        )
    bundle = load_bundle()
    bundle.validate()
    config.home.mkdir(parents=True, exist_ok=True)
    _secret_file(config.home / "secret_key", lambda: secrets.token_hex(32))
    password, generated = admin_password(config)

    # Migrations and roles only change with Superset's version (bi/constraints.txt): a metadata
    # database stamped with this environment's pins is up to date (saves ~30 s per re-run).
    stamp = config.home / ".initialized"
    version = (BI_DIR / "constraints.txt").read_text()
    if not stamp.exists() or stamp.read_text() != version:
        log("Superset: upgrading its metadata database ...")
        _run(config, [str(config.bin("superset")), "db", "upgrade"], "superset db upgrade")
        log("Superset: creating roles and permissions ...")
        _run(config, [str(config.bin("superset")), "init"], "superset init")
        stamp.write_text(version)

    zip_path = config.home / "marketflow_dashboards.zip"
    zip_path.write_bytes(bundle.zip_bytes(config.snapshot))
    log(f"Superset: importing {len(bundle.dashboards)} dashboards, {len(bundle.charts)} charts ...")
    _run(
        config,
        [str(config.bin("python")), str(BI_DIR / "provision.py"), str(zip_path)],
        "importing the dashboards bundle",
        {"MARKETFLOW_BI_ADMIN_PASSWORD": password},
    )
    if generated:
        log(f"Superset admin password (generated, kept in {config.home / 'admin_password'}):")
        log(f"  {password}")
    return password


def serve_command(config: BiConfig, host: str = "127.0.0.1") -> list[str]:
    return [
        str(config.bin("gunicorn")),
        "--bind",
        f"{host}:{config.port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--timeout",
        "120",
        "--limit-request-line",
        "0",
        "--limit-request-field_size",
        "0",
        "superset.app:create_app()",
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "up"
    if command not in ("setup", "serve", "up"):
        print("usage: python -m marketflow_assets.bi [setup|serve|up]", file=sys.stderr)
        return 2
    try:
        config = BiConfig.from_env()
        if command in ("setup", "up"):
            setup(config)
    except (BiSetupError, ConfigError) as e:
        print(f"make bi: {e}", file=sys.stderr)
        return 1
    if command == "setup":
        return 0
    print(
        f"Superset on http://127.0.0.1:{config.port} (user {ADMIN_USER}); snapshot "
        f"{config.snapshot}. Ctrl-C stops it."
    )
    sys.stdout.flush()
    config.home.mkdir(parents=True, exist_ok=True)
    os.chdir(config.home)
    os.execve(serve_command(config)[0], serve_command(config), config.env())
