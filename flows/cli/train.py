"""`mnistnn train`: answer a finished run from disk, or run the mnist-training flow."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from flows.cli.common import add_inbox_options, check_store, prefect_defaults
from flows.parameters import check_inputs, check_parameters
from mnistnn import inert
from mnistnn.cli.app import EXIT_OK, positive_int
from mnistnn.config import AUGMENTS, DTYPES, INITS, OUTPUTS, SCHEDULES, DataPaths
from mnistnn.errors import MnistnnError
from mnistnn.presets import PRESETS, Resolved
from mnistnn.registry.answer import Answer
from mnistnn.runs.records import EpochRecord

#: CLI flag (argparse dest) -> the flow's parameter.
_FLAGS = {
    "hidden": "hidden_nodes",
    "lr": "learning_rate",
    "seed": "seed",
    "init": "init",
    "dtype": "dtype",
    "batch_size": "batch_size",
    "output": "output",
    "biases": "biases",
    "momentum": "momentum",
    "schedule": "schedule",
    "schedule_epochs": "schedule_epochs",
    "shuffle": "shuffle",
    "augment": "augment",
    "epochs": "epochs",
    "evaluate_every": "evaluate_every",
}


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """train."""
    train = commands.add_parser("train", help="train through the mnist-training Prefect flow")
    train.add_argument("--train-csv", default=None, help="training CSV (default: bundled)")
    train.add_argument("--test-csv", default=None, help="test CSV (default: bundled)")
    train.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="named settings; flags override"
    )
    train.add_argument("--epochs", type=positive_int, default=None, help="default 15")
    train.add_argument("--hidden", type=positive_int, default=None, help="hidden nodes (88)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (0.05)")
    train.add_argument("--seed", type=int, default=None, help="(0)")
    train.add_argument("--init", choices=INITS, default=None, help="(legacy)")
    train.add_argument("--dtype", choices=DTYPES, default=None, help="(float64)")
    train.add_argument("--batch-size", type=positive_int, default=None, help="(1)")
    train.add_argument("--output", choices=OUTPUTS, default=None, help="(sigmoid)")
    train.add_argument("--biases", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--momentum", type=float, default=None, help="(0)")
    train.add_argument("--schedule", choices=SCHEDULES, default=None, help="(constant)")
    train.add_argument("--schedule-epochs", type=positive_int, default=None, help="(15)")
    train.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--augment", choices=AUGMENTS, default=None, help="(none)")
    train.add_argument(
        "--evaluate-every",
        type=positive_int,
        default=None,
        help="score every N-th epoch and the last (1; preset best: 10)",
    )
    train.add_argument("--fresh", action="store_true", help="discard this run's checkpoints")
    train.add_argument(
        "--keep-checkpoints",
        type=int,
        default=5,
        help="keep the weights of the newest N epochs, 0 = all (metadata is always kept)",
    )
    train.add_argument("--min-delta", type=float, default=0.0, help="promotion margin (>= 0)")
    add_inbox_options(train)
    train.add_argument(
        "--warm-start",
        action="store_true",
        help="fine-tune the champion's weights instead of training from scratch",
    )
    train.add_argument(
        "--recent-fraction", type=float, default=0.1, help="share of each batch held out (0.1)"
    )
    train.add_argument(
        "--promote-on-recent",
        action="store_true",
        help="compare with the champion on the recent test data instead of the test set",
    )
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Answer a finished run from disk, or run the mnist-training flow; print its summary."""
    paths = DataPaths.at(args.data_dir)
    check_store(paths)
    train_csv = args.train_csv or str(paths.train_csv)
    test_csv = args.test_csv or str(paths.test_csv)
    overrides = {name: getattr(args, flag) for flag, name in _FLAGS.items()}
    resolved = _preflight(args, train_csv, test_csv, overrides)
    answer = _existing_result(args, paths, resolved, train_csv, test_csv)
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
        result = flow_module.train_pipeline(
            train_csv=train_csv,
            test_csv=test_csv,
            preset=args.preset,
            **{name: value for name, value in overrides.items() if value is not None},
            data_dir=args.data_dir,
            fresh=args.fresh,
            max_rejected_fraction=args.max_rejected_fraction,
            min_delta=args.min_delta,
            keep_checkpoints=args.keep_checkpoints,
            incoming_dir=args.incoming,
            warm_start=args.warm_start,
            drift_threshold=args.drift_threshold,
            recent_fraction=args.recent_fraction,
            promote_on_recent=args.promote_on_recent,
            settle_seconds=args.settle_seconds,
        )
    result = {"ran": True, **result}
    if not api.started:
        result["ui_link"] = api.run_link(result["flow_run_id"])
        print(f"flow run: {result['ui_link']}", file=sys.stderr)
    return _print_summary(args, result)


def _preflight(
    args: argparse.Namespace, train_csv: str, test_csv: str, overrides: dict[str, object]
) -> Resolved:
    """Every parameter and both inputs checked before a server starts (the flow checks them
    again for deployment runs, with the same functions): one line and exit 1 on the first."""
    from mnistnn.presets import resolve

    resolved = resolve(args.preset, overrides)
    check_parameters(
        args.max_rejected_fraction,
        args.min_delta,
        args.keep_checkpoints,
        drift_threshold=args.drift_threshold,
        recent_fraction=args.recent_fraction,
        settle_seconds=args.settle_seconds,
    )
    check_inputs(train_csv, test_csv)
    return resolved


def _existing_result(
    args: argparse.Namespace, paths: DataPaths, resolved: Resolved, train_csv: str, test_csv: str
) -> Answer | None:
    """The finished run's summary when nothing would be trained or registered (no Prefect)."""
    if args.fresh or getattr(args, "warm_start", None):
        return None
    if _has_entries(args.incoming or paths.incoming):  # the flow decides what is new there
        return None
    from mnistnn.registry.answer import data_identity, existing_result

    try:  # an input that vanished since the pre-flight is the flow's to report
        train_sha, test_sha = data_identity(train_csv), data_identity(test_csv)
    except (MnistnnError, OSError):
        return None
    # With no inbox batches the snapshot's sha256 is the base file's (build_snapshot); with
    # batches, pass the snapshot's sha256 here instead of train_sha.
    return existing_result(
        paths,
        resolved,
        train_sha,
        test_sha,
        fresh=args.fresh,
        max_rejected_fraction=args.max_rejected_fraction,
    )


def _has_entries(folder: str | os.PathLike[str]) -> bool:
    """Whether a local folder or an `s3://` prefix holds anything at all."""
    from mnistnn.core import locations

    where = locations.as_location(folder)
    if isinstance(where, Path):
        return where.is_dir() and any(where.iterdir())
    return bool(locations.list_folder(where))


def _print_summary(args: argparse.Namespace, result: dict[str, object]) -> int:
    if args.json:
        print(json.dumps(result, default=str))
        return EXIT_OK
    metrics = result["metrics"]
    assert isinstance(metrics, list)
    print(f"{'epoch':>5}  {'accuracy':>8}  {'confident':>9}  {'train s':>7}")
    for row in metrics:
        scores = (
            f"{'not scored':>19}"
            if row["accuracy"] is None
            else f"{row['accuracy']:>8.4f}  {row['confident']:>9.4f}"
        )
        print(f"{row['epoch']:>5}  {scores}  {row['train_seconds']:>7.2f}")
    snapshot = result.get("snapshot")
    for batch in snapshot.get("batches", []) if isinstance(snapshot, dict) else []:
        print(inert.shown(_batch_line(batch)))  # names from the inbox stay inert
    print(f"run folder: {result['run_dir']}")
    decision = result.get("decision")
    if isinstance(decision, dict):
        print(f"registry: {decision['reason']}")
    return EXIT_OK


def _batch_line(batch: dict[str, object]) -> str:
    """`batch a.csv: 3000 rows, champion 0.9312, no drift` or `refused b.csv: reason`."""
    if batch["status"] != "accepted":
        return f"refused {batch['file']}: {batch['reason']}"
    score = batch["champion_accuracy"]
    shown = "no champion yet" if score is None else f"champion {score:.4f}"
    drift = f"DRIFT ({batch['drift_reason']})" if batch["drift"] else "no drift"
    return f"batch {batch['file']}: {batch['accepted']} rows, {shown}, {drift}"


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
