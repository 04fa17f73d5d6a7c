"""`python -m flows.cli`: the `mnistnn` console script."""

import sys

from flows.cli.main import main

sys.exit(main())
