"""`mnistnn watch` (the inbox sensor) and `mnistnn simulate-batches` (demo batches)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from flows.cli.common import positive_float, prefect_defaults
from flows.events import NO_SERVER
from mnistnn.cli.app import EXIT_OK, EXIT_PARTIAL, positive_int
from mnistnn.cli.options import add_options, values
from mnistnn.config import DataPaths
from mnistnn.errors import MnistnnError
from mnistnn.inert import shown
from mnistnn.parameters import WatchParameters, parse

if TYPE_CHECKING:
    from flows.watch import WatchPass


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """watch and simulate-batches."""
    watch = commands.add_parser(
        "watch", help="ingest new batches of the labelled inbox and emit their Prefect events"
    )
    add_options(watch, WatchParameters)
    watch.add_argument(
        "--once", action="store_true", help="one pass, then exit (2 when it refused a batch)"
    )
    watch.add_argument(
        "--interval", type=positive_float, default=30.0, help="seconds between passes (30)"
    )
    watch.add_argument("--json", action="store_true", help="one JSON object per pass")
    watch.set_defaults(handler=cmd_watch)

    simulate = commands.add_parser(
        "simulate-batches", help="write demo batches (plain and shifted) from the bundled data"
    )
    simulate.add_argument("--out", required=True, help="folder to write sim-*.csv into")
    simulate.add_argument("--count", type=positive_int, default=5, help="batches (5)")
    simulate.add_argument("--rows", type=positive_int, default=1000, help="rows per batch (1000)")
    simulate.add_argument("--seed", type=int, default=0, help="(0)")
    simulate.add_argument("--train-csv", default=None, help="source rows (default: bundled)")
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(handler=cmd_simulate)


def cmd_watch(args: argparse.Namespace) -> int:
    """One pass (`--once`: exit 2 when it refused a batch) or a pass every `--interval` seconds
    until SIGINT or SIGTERM."""
    prefect_defaults()
    from flows.watch import watch_once

    params = parse(WatchParameters, values(args, WatchParameters))
    paths = DataPaths.at(params.data.data_dir)
    incoming = params.data.incoming_dir or paths.incoming
    options = {"train_csv": params.data.train_csv, **params.inbox.model_dump()}
    with _stop_on_signals() as stop:
        while True:
            try:
                result = watch_once(incoming, paths, **options)
            except (MnistnnError, OSError) as exc:
                if args.once:
                    raise
                # polling: a failed pass (a full disk, a registry locked too long) is retried
                failed = shown(f"mnistnn: watch: pass failed, retrying: {exc}")
                print(failed, file=sys.stderr, flush=True)
            else:
                _show(result, args.json)
                if args.once:
                    return exit_status(result)
            if stop.wait(args.interval):
                return EXIT_OK


def exit_status(result: WatchPass) -> int:
    """2 (partial failure, as `ingest` and `score`) when the pass refused a batch, else 0; the
    other batches of the pass were ingested all the same. A refused batch is new once: the next
    pass does not read it again (until its bytes change), so it exits 0 again."""
    refused = any(batch["status"] != "accepted" for batch in result.new)
    return EXIT_PARTIAL if refused else EXIT_OK


def _show(result: WatchPass, as_json: bool) -> None:
    if not as_json:
        for line in result.lines():
            print(shown(line), flush=True)  # a name cannot forge a line nor drive the terminal
        return
    print(json.dumps(result.to_dict(), default=str), flush=True)
    if result.events and result.sent_to is None:
        print(f"mnistnn: watch: {NO_SERVER}", file=sys.stderr, flush=True)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM: the current pass finishes, then the loop ends."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Write the demo batches and print one line each."""
    from mnistnn.data.simulate import simulate_batches

    paths = DataPaths.at(args.data_dir)
    written = simulate_batches(
        args.train_csv or paths.train_csv,
        args.out,
        count=args.count,
        rows=args.rows,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps([batch.to_dict() for batch in written]))
        return EXIT_OK
    for batch in written:
        counts = " ".join(str(count) for count in batch.label_counts)
        print(f"{batch.path}: {batch.rows} rows, {batch.kind}; labels 0-9: {counts}")
    return EXIT_OK
