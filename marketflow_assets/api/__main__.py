"""`make serve`: the API on MARKETFLOW_API_HOST:MARKETFLOW_API_PORT (127.0.0.1:8000) with uvicorn.

MARKETFLOW_API_KEYS (comma-separated) turns on API keys; the keys are read here, never logged."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from marketflow_assets.api.app import create_app
from marketflow_assets.serving import current_snapshot_path
from marketflow_assets.settings import Settings


def api_keys_from_env() -> frozenset[str]:
    raw = os.environ.get("MARKETFLOW_API_KEYS", "")
    return frozenset(k.strip() for k in raw.split(",") if k.strip())


def main() -> int:
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A record per request (the access log): skip what no format here shows, as the logging
    # HOWTO's "Optimization" section suggests (caller lookup, thread and process names).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    keys = api_keys_from_env()
    app = create_app(settings, api_keys=keys)
    print(
        f"MarketFlow API on http://{settings.api_host}:{settings.api_port} (docs at /docs), "
        f"serving {current_snapshot_path(settings)}; API keys {'on' if keys else 'off'}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
