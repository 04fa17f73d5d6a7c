"""`mnistnn label import FILE`: labelled rows of a review file become a labelled inbox batch."""

from __future__ import annotations

import argparse

from mnistnn.cli.app import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from mnistnn.config import DataPaths


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """label import."""
    label = commands.add_parser("label", help="bring reviewed digits back into training")
    label_commands = label.add_subparsers(dest="label_command", required=True)
    importing = label_commands.add_parser(
        "import", help="write a review file's labelled rows into the labelled inbox"
    )
    importing.add_argument("file", metavar="FILE", help="a reviewed data/review/<sha16>.csv")
    label.set_defaults(handler=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    """Import one reviewed file: exit 1 when no row had a label, 2 when bad rows were skipped."""
    from mnistnn.predict.review import import_reviewed

    summary = import_reviewed(args.file, DataPaths.at(args.data_dir).incoming)
    print(summary.describe())
    if summary.output is None:
        return EXIT_ERROR
    return EXIT_PARTIAL if summary.bad else EXIT_OK
