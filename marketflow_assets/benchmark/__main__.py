import sys

from marketflow_assets.benchmark.cli import main

sys.exit(main())
