"""`mnistnn train`: answer a finished run from disk, or run the mnist-training flow."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flows.cli.common import check_store, prefect_defaults
from flows.parameters import check_inputs
from mnistnn.cli.app import EXIT_OK
from mnistnn.cli.options import add_options, values
from mnistnn.config import DataPaths
from mnistnn.errors import MnistnnError
from mnistnn.inert import shown
from mnistnn.parameters import TrainingParameters, flat, parse
from mnistnn.registry.answer import Answer
from mnistnn.runs.records import EpochRecord, RunResult


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """train: one option per declared training parameter (`mnistnn.parameters`)."""
    train = commands.add_parser("train", help="train through the mnist-training Prefect flow")
    add_options(train, TrainingParameters)
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Answer a finished run from disk, or run the mnist-training flow; print its summary."""
    given = {
        name: value for name, value in values(args, TrainingParameters).items() if value is not None
    }
    params = _preflight(given)
    answer = _existing_result(params)
    if answer is not None:
        print(answer.line, file=sys.stderr)
        return _print_summary(args, answer.result)
    prefect_defaults()
    from flows import training as flow_module
    from flows.server import prefect_api

    show_progress = not args.json and sys.stderr.isatty()
    with contextlib.ExitStack() as scope:
        api = scope.enter_context(prefect_api())
        if show_progress:
            scope.enter_context(flow_module.epoch_listener(scope.enter_context(_progress_bar())))
        result = flow_module.train_pipeline(**given)
    if not api.started and result.flow_run_id is not None:
        result = dataclasses.replace(result, ui_link=api.run_link(result.flow_run_id))
        print(f"flow run: {result.ui_link}", file=sys.stderr)
    return _print_summary(args, result)


def _preflight(given: dict[str, Any]) -> TrainingParameters:
    """Every parameter, the store and both inputs checked before a server starts, with the
    declaration the flow checks them with again: one line and exit 1 on the first problem."""
    params = parse(TrainingParameters, given)
    paths = DataPaths.at(params.data.data_dir)
    check_store(paths)
    check_inputs(*_inputs(params, paths))
    return params


def _inputs(params: TrainingParameters, paths: DataPaths) -> tuple[str, str]:
    """The training and test CSVs: given, or the data folder's bundled ones (as the flow)."""
    return params.data.train_csv or str(paths.train_csv), params.data.test_csv or str(
        paths.test_csv
    )


def _existing_result(params: TrainingParameters) -> Answer | None:
    """The finished run's summary when nothing would be trained or registered (no Prefect)."""
    if params.run.fresh or params.run.warm_start:
        return None
    paths = DataPaths.at(params.data.data_dir)
    if _has_entries(params.data.incoming_dir or paths.incoming):  # the flow decides what is new
        return None
    from mnistnn.registry.answer import data_identity, existing_result

    train_csv, test_csv = _inputs(params, paths)
    try:  # an input that vanished since the pre-flight is the flow's to report
        train_sha, test_sha = data_identity(train_csv), data_identity(test_csv)
    except (MnistnnError, OSError):
        return None
    # With no inbox batches the snapshot's sha256 is the base file's (build_snapshot); with
    # batches, pass the snapshot's sha256 here instead of train_sha.
    return existing_result(
        paths,
        params.network.resolve(),
        train_sha,
        test_sha,
        max_rejected_fraction=params.inbox.max_rejected_fraction,
        parameters=flat(params),
    )


def _has_entries(folder: str | os.PathLike[str]) -> bool:
    """Whether a local folder or an `s3://` prefix holds anything at all."""
    from mnistnn.core import locations

    where = locations.as_location(folder)
    if isinstance(where, Path):
        return where.is_dir() and any(where.iterdir())
    return bool(locations.list_folder(where))


def _print_summary(args: argparse.Namespace, result: RunResult) -> int:
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return EXIT_OK
    print(f"{'epoch':>5}  {'accuracy':>8}  {'confident':>9}  {'train s':>7}")
    for row in result.metrics:
        scores = (
            f"{'not scored':>19}"
            if row.accuracy is None or row.confident is None
            else f"{row.accuracy:>8.4f}  {row.confident:>9.4f}"
        )
        print(f"{row.epoch:>5}  {scores}  {row.train_seconds:>7.2f}")
    for batch in (result.snapshot or {}).get("batches", []):
        print(shown(_batch_line(batch)))  # names from the inbox stay inert
    print(f"run folder: {result.run_dir}")
    if result.decision is not None:
        print(f"registry: {result.decision['reason']}")
    return EXIT_OK


def _batch_line(batch: dict[str, object]) -> str:
    """`batch a.csv: 3000 rows, champion 0.9312, no drift` or `refused b.csv: reason`."""
    if batch["status"] != "accepted":
        return f"refused {batch['file']}: {batch['reason']}"
    score = batch["champion_accuracy"]
    champion = "no champion yet" if score is None else f"champion {score:.4f}"
    drift = f"DRIFT ({batch['drift_reason']})" if batch["drift"] else "no drift"
    return f"batch {batch['file']}: {batch['accepted']} rows, {champion}, {drift}"


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[EpochRecord, int], None]]:
    """A rich progress bar (epoch, last accuracy, time left) fed by the flow after each epoch."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("epoch {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("accuracy {task.fields[accuracy]}"),
        TimeRemainingColumn(),
        transient=True,
    )
    task_id = None

    def listener(record: EpochRecord, epochs: int) -> None:
        nonlocal task_id
        if task_id is None:
            progress.start()
            task_id = progress.add_task("train", total=epochs, accuracy="-")
        if record.accuracy is None:  # an epoch the schedule skips: the last score stays
            progress.update(task_id, advance=1)
        else:
            progress.update(task_id, advance=1, accuracy=f"{record.accuracy:.4f}")

    try:
        yield listener
    finally:
        progress.stop()
