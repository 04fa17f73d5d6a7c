"""`mnistnn`, the console script: the library's commands plus those that run a flow.

train, sweep and serve live here because they run Prefect flows; ingest, models, evaluate and
predict come from `mnistnn.cli`, which never imports Prefect.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from flows import cli_inbox, cli_scoring
from flows.parameters import check_inputs, check_parameters
from mnistnn.cli import gc, labels, library
from mnistnn.cli.app import EXIT_OK, build_parser, positive_int, run
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
    """train, sweep and serve."""
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
    cli_inbox.add_inbox_options(train)
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

    sweep = commands.add_parser("sweep", help="train a grid of configurations on Dask")
    sweep.add_argument("--hidden", default="88", help="hidden nodes: 50,100,200 or 50:200:50")
    sweep.add_argument("--lr", default="0.05", help="learning rates: 0.05,0.1,0.2")
    sweep.add_argument("--epochs", default="5", help="epoch counts: 1,2,5")
    sweep.add_argument("--batch-size", default="1", help="batch sizes: 1,32")
    sweep.add_argument("--dtype", default="float64", help="dtypes: float64,float32")
    sweep.add_argument("--seeds", default="0", help="seeds: 0,1,2")
    sweep.add_argument("--train-csv", default=None)
    sweep.add_argument("--test-csv", default=None)
    sweep.add_argument("--dask-address", default=None, help="tcp://HOST:PORT of a Dask cluster")
    sweep.add_argument("--workers", type=positive_int, default=None, help="local Dask workers")
    sweep.add_argument(
        "--register-best", action="store_true", help="register the best model (may promote it)"
    )
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(handler=cmd_sweep)

    serve = commands.add_parser("serve", help="serve the nightly-retrain deployment (no worker)")
    serve.set_defaults(handler=cmd_serve)


def prefect_defaults() -> None:
    """Offline-friendly Prefect settings, unless the user chose otherwise; known errors are
    logged by Prefect without their traceback (the CLI prints them as one line at the end)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server needs more than Prefect's 20 s to start on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownErrorsWithoutTraceback) for f in logger.filters):
            logger.addFilter(_KnownErrorsWithoutTraceback())


class _KnownErrorsWithoutTraceback(logging.Filter):
    """Drop the traceback from log records of our own errors; keep it for real bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MnistnnError):
            record.exc_info = None
            record.exc_text = None
        return True


def check_store(paths: DataPaths) -> None:
    """One request to the data_dir's object store before Prefect starts: unreachable, wrong
    credentials or a missing bucket fail here in one line, not after every task's retries."""
    if paths.is_remote:
        paths.store.exists("models/registry.json")


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
        print(_batch_line(batch))
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


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the mnist-sweep flow and print one line per result."""
    prefect_defaults()
    from flows.sweep import run_sweep
    from mnistnn.runs.sweep import parse_list

    paths = DataPaths.at(args.data_dir)
    check_store(paths)
    result = run_sweep(
        dask_address=args.dask_address,
        workers=args.workers,
        hidden_nodes=parse_list(args.hidden, int, "--hidden"),
        learning_rates=parse_list(args.lr, float, "--lr"),
        epochs=parse_list(args.epochs, int, "--epochs"),
        batch_sizes=parse_list(args.batch_size, int, "--batch-size"),
        dtypes=[dtype.strip() for dtype in args.dtype.split(",")],
        seeds=parse_list(args.seeds, int, "--seeds"),
        train_csv=args.train_csv or str(paths.train_csv),
        test_csv=args.test_csv or str(paths.test_csv),
        data_dir=args.data_dir,
        register_best=args.register_best,
    )
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    print(f"{'hidden':>6}  {'lr':>6}  {'epochs':>6}  {'accuracy':>8}  {'seconds':>7}")
    for point in sorted(result["points"], key=lambda p: -p["accuracy"]):
        print(
            f"{point['hidden_nodes']:>6}  {point['learning_rate']:>6}  {point['epochs']:>6}  "
            f"{point['accuracy']:>8.4f}  {point['seconds']:>7.1f}"
        )
    print(f"report: {result['report']}")
    if result["decision"]:
        print(f"registry: {result['decision']['reason']}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the nightly-retrain deployment with flow.serve (no work pool needed)."""
    prefect_defaults()
    from flows.serve import serve

    serve()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mnistnn` console script."""
    return run(
        build_parser(
            add_commands,
            library.add_commands,
            labels.add_commands,
            cli_scoring.add_commands,
            cli_inbox.add_commands,
            gc.add_commands,
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
