import sys

from marketflow_assets.repair_report.fixtures import main

sys.exit(main())
