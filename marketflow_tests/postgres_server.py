"""A throw-away PostgreSQL server for tests: Debian's `initdb` + `pg_ctl` in a temporary folder.

The server listens on 127.0.0.1 on a free port (and a socket in its own folder), trusts local
connections, and is stopped and deleted when the context exits. PostgreSQL refuses to run as
root, so under root the server runs as the `postgres` system user the Debian package creates.
`start_postgres` raises `PostgresUnavailable` with the reason when no server can start (no
binaries, no unprivileged user): tests turn that into a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")  # Debian: <version>/bin/{initdb,pg_ctl}
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    db_name: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db_name}"


def _bin_dir() -> Path:
    found = sorted(PG_ROOT.glob("*/bin"), key=lambda p: int(p.parent.name.split(".")[0]))
    for candidate in reversed(found):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as(user: str | None, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    cmd = args if user is None else ["runuser", "-u", user, "--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


@contextlib.contextmanager
def start_postgres(db_name: str = "dagster") -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    run_user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable(
                "running as root and there is no 'postgres' user to run the server as"
            ) from exc
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and `runuser` is missing")
        run_user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="marketflow-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if run_user is not None:
        info = pwd.getpwnam(run_user)
        for path in (root, sock):
            os.chown(path, info.pw_uid, info.pw_gid)
    user = "marketflow"
    port = _free_port()
    started = False
    try:
        init = _run_as(
            run_user,
            [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8"],
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = _run_as(
            run_user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
        )
        if start.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")[-800:]
            raise PostgresUnavailable(f"pg_ctl start failed: {start.stderr.strip()} {log}")
        started = True
        created = _run_as(
            run_user,
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db_name],
        )
        if created.returncode != 0:
            raise PostgresUnavailable(f"createdb failed: {created.stderr.strip()}")
        yield PostgresServer("127.0.0.1", port, user, db_name)
    finally:
        if started:
            _run_as(run_user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(root, ignore_errors=True)
