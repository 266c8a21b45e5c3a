"""Superset configuration for MarketFlow (`make bi`), loaded through SUPERSET_CONFIG_PATH.

Everything Superset keeps lives under $MARKETFLOW_BI_HOME (set by `marketflow_assets.bi`):
its metadata database and the secret key generated on first set-up. Chart data is never cached,
so a dashboard refresh always reads the current serving snapshot.
"""

import os
from pathlib import Path

_HOME = Path(os.environ["MARKETFLOW_BI_HOME"])

SQLALCHEMY_DATABASE_URI = f"sqlite:///{_HOME / 'superset.db'}"
SECRET_KEY = (_HOME / "secret_key").read_text().strip()

# A new snapshot must show on refresh: no result caching anywhere between the dashboards and it.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

FEATURE_FLAGS = {
    "DASHBOARD_NATIVE_FILTERS": True,
    "DASHBOARD_CROSS_FILTERS": True,
    "ENABLE_TEMPLATE_PROCESSING": False,
}

# Local, single-user by default: served on 127.0.0.1 only, nothing reaches the internet.
SESSION_COOKIE_SECURE = False
TALISMAN_ENABLED = False
CONTENT_SECURITY_POLICY_WARNING = False
WTF_CSRF_ENABLED = True
SQLLAB_TIMEOUT = 120
SUPERSET_WEBSERVER_TIMEOUT = 120
ROW_LIMIT = 50_000
