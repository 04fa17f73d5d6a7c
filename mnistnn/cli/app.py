"""The parser's skeleton and the one place that turns known errors into one line and a status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mnistnn.config import DataPaths
from mnistnn.errors import MnistnnError
from mnistnn.inert import shown

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Adds subcommands to the parser's subparsers (the library's and the flows').
CommandGroup = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser(*groups: CommandGroup) -> argparse.ArgumentParser:
    """The `mnistnn` parser with the global options and every group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="mnistnn",
        description="Train, evaluate and use the classic three-layer MNIST network.",
    )
    parser.add_argument(
        "--data-dir", default=str(DataPaths().root), help="data folder (default: data)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in groups:
        group(commands)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse `argv`, call the command's handler, and print a known error as one line."""
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (MnistnnError, ValueError, OSError, MemoryError, RecursionError) as exc:
        message = str(exc).strip() or type(exc).__name__
        if isinstance(exc, MemoryError | RecursionError):
            message = f"out of memory ({type(exc).__name__}); see `mnistnn.limits` for the limits"
        print(f"mnistnn: error: {shown(message)}", file=sys.stderr)  # a name cannot forge a line
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mnistnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status
