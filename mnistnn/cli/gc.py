"""`mnistnn gc [--apply]`: what retention may free (with sizes), and freeing it."""

from __future__ import annotations

import argparse

from mnistnn.cli.app import EXIT_OK
from mnistnn.config import DataPaths


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """gc."""
    gc = commands.add_parser("gc", help="list (or --apply: delete) what retention may free")
    gc.add_argument("--apply", action="store_true", help="delete it (default: only list it)")
    gc.add_argument(
        "--keep", type=int, default=10, help="newest versions kept besides champion/challenger"
    )
    gc.add_argument(
        "--run-days", type=float, default=7.0, help="age of never-registered runs to free"
    )
    gc.add_argument(
        "--prediction-days", type=float, default=90.0, help="age of predictions to free"
    )
    gc.add_argument(
        "--cache-days", type=float, default=1.0, help="age of download-cache entries to free"
    )
    gc.set_defaults(handler=cmd_gc)


def cmd_gc(args: argparse.Namespace) -> int:
    """List what may be freed, or free it; every bad value fails before anything is read."""
    from mnistnn.registry import retention

    policy = retention.Policy(
        keep=args.keep,
        run_days=args.run_days,
        prediction_days=args.prediction_days,
        cache_days=args.cache_days,
    ).check()
    paths = DataPaths.at(args.data_dir)
    result = (retention.apply if args.apply else retention.plan)(paths, policy)
    for line in result.lines(applied=args.apply):
        print(line)
    return EXIT_OK
