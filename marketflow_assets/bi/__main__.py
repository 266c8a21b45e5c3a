"""`python -m marketflow_assets.bi [setup|serve|up]`: `make bi` (see marketflow_assets.bi.superset)."""

import sys

from marketflow_assets.bi.superset import main

sys.exit(main())
