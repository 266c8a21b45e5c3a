"""`marketflow-dbt`: dbt that dies with the run process that started it.

dagster-dbt runs dbt as a subprocess. If the run process is killed (SIGKILL, OOM killer, a host
agent), an orphaned dbt would go on writing the warehouse while the next run starts, and fail it
on DuckDB's file lock. On Linux this wrapper asks the kernel to SIGKILL it when its parent dies
(`PR_SET_PDEATHSIG`, kept across exec) and then becomes dbt. Elsewhere it just runs dbt.
"""

import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def dbt_path() -> str:
    return (
        shutil.which("dbt", path=str(Path(sys.executable).parent)) or shutil.which("dbt") or "dbt"
    )


def main() -> None:
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
    executable = dbt_path()
    os.execv(executable, [executable, *sys.argv[1:]])


if __name__ == "__main__":
    main()
