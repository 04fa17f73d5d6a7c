"""`mnistnn`, the console script: the library's commands plus those that run a flow.

train, sweep, serve, score, watch, simulate-batches and automations live in this package because
they use Prefect; ingest, models, evaluate, predict and label come from `mnistnn.cli`, which never
imports Prefect (`automations` wraps `models promote`/`rollback` to send events). Only this
module imports the others (no cycle).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flows.cli import automations, inbox, scoring, sweep, train
from mnistnn.cli import gc, labels, library
from mnistnn.cli.app import build_parser, run


def parser() -> argparse.ArgumentParser:
    """The whole `mnistnn` parser, every command of both packages."""
    return build_parser(
        library.add_commands,
        labels.add_commands,
        train.add_commands,
        sweep.add_commands,
        scoring.add_commands,
        inbox.add_commands,
        gc.add_commands,
        automations.add_commands,  # last: it wraps the library's `models`
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mnistnn` console script."""
    return run(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
