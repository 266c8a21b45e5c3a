"""`marketflow-dbt`: dbt that dies with the run process that started it, started warm when it can.

dagster-dbt runs dbt as a subprocess. If the run process is killed (SIGKILL, OOM killer, a host
agent), an orphaned dbt would go on writing the warehouse while the next run starts, and fail it
on DuckDB's file lock. On Linux this wrapper asks the kernel to SIGKILL it when its parent dies
(`PR_SET_PDEATHSIG`, kept across exec) and then becomes dbt. Elsewhere it just runs dbt.

Warm start (Linux): a dbt invocation spends seconds starting Python and importing dbt before it
reads its first file, the largest part of a one-session `dbt build` (profiled). A run can start a
warm dbt early (`start_warm_dbt`, while the run's other steps compute): a process that imports
dbt and waits on an abstract Unix socket. When `marketflow-dbt` is then started with that
socket's name in `WARM_SOCKET_ENV`, it hands the warm process its stdin/stdout/stderr, arguments,
environment and working directory (SCM_RIGHTS), so the warm process *is* this invocation's dbt:
same output pipe, same exit code; this wrapper forwards SIGINT/SIGTERM to it and exits only
after it has exited (and so closed the warehouse). A warm dbt serves one invocation; without
one (or if it is gone), `marketflow-dbt` starts dbt cold as before. The warm process also dies
with the run process (`PR_SET_PDEATHSIG`), so a killed run leaves no dbt behind either way.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import ctypes
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
# The abstract socket name of the run's warm dbt, in the environment of a dbt invocation.
WARM_SOCKET_ENV = "MARKETFLOW_DBT_WARM_SOCKET"
# The folder dbt runs in, in the environment of a dbt invocation: the warehouse's, so the profile
# names the warehouse by its file name (see `dbt_run_environment` in assets/dbt.py).
WORKDIR_ENV = "MARKETFLOW_DBT_WORKDIR"
_HANDED_FDS = (0, 1, 2)
_MAX_MESSAGE = 1 << 20


def dbt_path() -> str:
    return (
        shutil.which("dbt", path=str(Path(sys.executable).parent)) or shutil.which("dbt") or "dbt"
    )


def warm_start_supported() -> bool:
    return sys.platform.startswith("linux")


def _die_with_parent(parent: int | None = None) -> None:
    """SIGKILL this process when the process that started it (pid `parent`, default: the current
    parent) dies (Linux)."""
    if not warm_start_supported():
        return
    parent = os.getppid() if parent is None else parent
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _address(name: str) -> str:
    return "\0" + name  # Linux abstract namespace: no file to clean up, gone with the socket


def start_warm_dbt() -> tuple[subprocess.Popen, str]:
    """Start a warm dbt for one later invocation; returns the process and its socket name (to pass
    in `WARM_SOCKET_ENV`). The socket listens before this returns (the warm process inherits it),
    so a client never misses it while the warm process still imports dbt; the warm process touches
    no warehouse until a client hands it an invocation."""
    name = f"marketflow-dbt-{os.getpid()}-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(_address(name))
        listener.listen(1)
        process = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "marketflow_assets.dbt_guard",
                "--serve",
                str(listener.fileno()),
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=[listener.fileno()],
        )
    # Only the warm process holds the socket now: once it has served (or died), clients are
    # refused and start dbt cold.
    return process, name


def serve(listener_fd: int, parent: int) -> None:
    """The warm dbt: import dbt, then run the one invocation a client hands over on the inherited
    socket (its fds, args, environment, directory) as dbt's own command line would, in this
    process."""
    _die_with_parent(parent)
    # Named as a cold dbt is (its script's name), so `ps`, `top` and the bench's memory by
    # command show the warm process as dbt rather than as one more python.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, b"dbt", 0, 0, 0)
    listener = socket.socket(fileno=listener_fd)
    # The seconds this process exists to spend early: dbt's CLI, MarketFlow's adapter (imported
    # when dbt registers it) and what a build imports on its way.
    import dbt.adapters.duckdb
    import dbt.compilation
    import dbt.task.build  # noqa: F401
    from dbt.cli.main import cli

    connection, _ = listener.accept()
    listener.close()  # one invocation: later clients start dbt cold
    message, fds, _, _ = socket.recv_fds(connection, _MAX_MESSAGE, len(_HANDED_FDS))
    request = json.loads(message)
    sys.stdout.flush()
    sys.stderr.flush()
    for target, fd in zip(_HANDED_FDS, fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["dbt", *request["args"]]
    try:
        cli.main(args=request["args"], prog_name="dbt")
        code = 0
    except SystemExit as exc:  # click's standalone mode always ends this way
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # dbt's exit hooks now (dbt-duckdb drops its DuckDB environment, logging flushes), then the
    # collection that closes the DuckDB instance (checkpoint; the warehouse file is free after),
    # then exit without tearing down the thousands of modules dbt imported (~0.5 s, profiled).
    atexit._run_exitfuncs()
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    connection.sendall(f"{code}\n".encode())
    os._exit(code)  # closes `connection`: the client's EOF, after the warehouse was closed


def _run_warm(name: str, args: list[str]) -> int | None:
    """Hand this invocation to the warm dbt `name`; its exit code, or None if there is none to
    hand it to (then the caller starts dbt cold)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(_address(name))
    except OSError:
        client.close()
        return None
    creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, array.array("i").itemsize * 3)
    server_pid = array.array("i", creds)[0]

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    env = {key: value for key, value in os.environ.items() if key != WARM_SOCKET_ENV}
    request = json.dumps({"args": args, "env": env, "cwd": str(Path.cwd())}).encode()
    socket.send_fds(client, [request], list(_HANDED_FDS))
    received = b""
    while chunk := client.recv(64):  # the exit code, then EOF when the warm dbt has ended
        received += chunk
    client.close()
    if not received.strip():
        sys.stderr.write("marketflow-dbt: the warm dbt process ended without an exit code\n")
        return 1
    return int(received.split()[0])


def _enter_workdir() -> None:
    """Run in the folder `WORKDIR_ENV` names, if any. dbt finds its project and profile where it
    was started (dagster-dbt starts it in the project folder), so they are named explicitly
    first."""
    workdir = os.environ.pop(WORKDIR_ENV, None)
    if not workdir:
        return
    os.environ.setdefault("DBT_PROJECT_DIR", str(Path.cwd()))
    os.environ.setdefault("DBT_PROFILES_DIR", os.environ["DBT_PROJECT_DIR"])
    os.chdir(workdir)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))  # ends the process
        return
    _die_with_parent()
    _enter_workdir()
    name = os.environ.get(WARM_SOCKET_ENV)
    if name and warm_start_supported():
        code = _run_warm(name, sys.argv[1:])
        if code is not None:
            sys.exit(code)
    os.environ.pop(WARM_SOCKET_ENV, None)
    executable = dbt_path()
    os.execv(executable, [executable, *sys.argv[1:]])


if __name__ == "__main__":
    main()
