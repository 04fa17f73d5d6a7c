"""`python -m mnistnn.cli`: the library's commands alone, without Prefect."""

import sys

from mnistnn.cli import labels
from mnistnn.cli.app import build_parser, run
from mnistnn.cli.library import add_commands

sys.exit(run(build_parser(add_commands, labels.add_commands), None))
