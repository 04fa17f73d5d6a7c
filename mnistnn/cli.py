"""`mnistnn`: the command line. Parses arguments, calls the library or runs a flow, and turns
known errors into one line on stderr and a non-zero exit status (never a traceback)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnistnn.config import AUGMENTS, DTYPES, INITS, OUTPUTS, SCHEDULES, DataPaths, NetworkConfig
from mnistnn.errors import MnistnnError
from mnistnn.presets import PRESETS, preset

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(
        prog="mnistnn",
        description="Train, evaluate and use the classic three-layer MNIST network.",
    )
    parser.add_argument(
        "--data-dir", default=str(DataPaths().root), help="data folder (default: data)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train through the mnist-training Prefect flow")
    train.add_argument("--train-csv", default=None, help="training CSV (default: bundled)")
    train.add_argument("--test-csv", default=None, help="test CSV (default: bundled)")
    train.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="named settings; flags override"
    )
    train.add_argument("--epochs", type=_positive_int, default=None, help="default 15")
    train.add_argument("--hidden", type=_positive_int, default=None, help="hidden nodes (88)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (0.05)")
    train.add_argument("--seed", type=int, default=None, help="(0)")
    train.add_argument("--init", choices=INITS, default=None, help="(legacy)")
    train.add_argument("--dtype", choices=DTYPES, default=None, help="(float64)")
    train.add_argument("--batch-size", type=_positive_int, default=None, help="(1)")
    train.add_argument("--output", choices=OUTPUTS, default=None, help="(sigmoid)")
    train.add_argument("--biases", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--momentum", type=float, default=None, help="(0)")
    train.add_argument("--schedule", choices=SCHEDULES, default=None, help="(constant)")
    train.add_argument("--schedule-epochs", type=_positive_int, default=None, help="(15)")
    train.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--augment", choices=AUGMENTS, default=None, help="(none)")
    train.add_argument("--fresh", action="store_true", help="discard this run's checkpoints")
    train.add_argument(
        "--keep-checkpoints",
        type=int,
        default=5,
        help="keep the weights of the newest N epochs, 0 = all (metadata is always kept)",
    )
    train.add_argument("--min-delta", type=float, default=0.0, help="promotion margin")
    train.add_argument("--max-rejected-fraction", type=float, default=0.0)
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(handler=cmd_train)

    ingest = commands.add_parser("ingest", help="validate MNIST CSVs into Parquet")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--max-rejected-fraction", type=float, default=0.0)
    ingest.set_defaults(handler=cmd_ingest)

    models = commands.add_parser("models", help="list, show, promote or roll back models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_commands.add_parser("list", help="every registered version")
    show = models_commands.add_parser("show", help="one version's metadata")
    show.add_argument("version")
    promote = models_commands.add_parser("promote", help="make a version the champion")
    promote.add_argument("version")
    models_commands.add_parser("rollback", help="return to the previous champion")
    models.set_defaults(handler=cmd_models)

    evaluate = commands.add_parser("evaluate", help="score a model on a labelled test CSV")
    evaluate.add_argument(
        "--model", default=None, help="version, .npz or checkpoint (default: champion)"
    )
    evaluate.add_argument(
        "--test-csv", default=None, help="labelled CSV (default: bundled test set)"
    )
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="recognise digits in images or a CSV")
    predict.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    predict.add_argument(
        "--model", default=None, help="version, .npz or checkpoint (default: champion)"
    )
    predict.add_argument("--csv", default=None, help="unlabelled CSV of 784 pixel columns")
    predict.add_argument("--out", default=None, help="output CSV (folder or --csv mode)")
    predict.add_argument(
        "--show", default=None, metavar="OUT.png", help="save what the network saw"
    )
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=cmd_predict)

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
    sweep.add_argument("--workers", type=_positive_int, default=None, help="local Dask workers")
    sweep.add_argument(
        "--register-best", action="store_true", help="register the best model (may promote it)"
    )
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(handler=cmd_sweep)

    serve = commands.add_parser("serve", help="serve the nightly-retrain deployment (no worker)")
    serve.set_defaults(handler=cmd_serve)
    return parser


def _prefect_defaults() -> None:
    """Offline-friendly Prefect settings, unless the user chose otherwise; known errors are
    logged by Prefect without their traceback (the CLI prints them as one line at the end)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
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


def cmd_train(args: argparse.Namespace) -> int:
    """Run the mnist-training flow and print its summary."""
    _prefect_defaults()
    from flows import training as flow_module

    paths = DataPaths(Path(args.data_dir))
    listener = _progress_listener() if not args.json and sys.stderr.isatty() else None
    if listener is not None:
        flow_module.EPOCH_LISTENERS.append(listener)
    result = flow_module.train_pipeline(
        train_csv=args.train_csv or str(paths.train_csv),
        test_csv=args.test_csv or str(paths.test_csv),
        **_network_parameters(args),
        data_dir=args.data_dir,
        fresh=args.fresh,
        max_rejected_fraction=args.max_rejected_fraction,
        min_delta=args.min_delta,
        keep_checkpoints=args.keep_checkpoints,
    )
    if args.json:
        print(json.dumps(result, default=str))
        return EXIT_OK
    print(f"{'epoch':>5}  {'accuracy':>8}  {'confident':>9}  {'train s':>7}")
    for row in result["metrics"]:
        print(
            f"{row['epoch']:>5}  {row['accuracy']:>8.4f}  {row['confident']:>9.4f}  "
            f"{row['train_seconds']:>7.2f}"
        )
    print(f"run folder: {result['run_dir']}")
    decision = result.get("decision")
    if decision:
        print(f"registry: {decision['reason']}")
    return EXIT_OK


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
}


def _network_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's network parameters: defaults, then the preset, then the flags given."""
    values: dict[str, Any] = {**NetworkConfig().to_dict(), "epochs": 15}
    for unused in ("input_nodes", "output_nodes"):
        values.pop(unused)
    if args.preset:
        values.update(preset(args.preset))
    for flag, name in _FLAGS.items():
        if getattr(args, flag) is not None:
            values[name] = getattr(args, flag)
    return values


def _progress_listener() -> Callable[[dict[str, Any], int], None]:
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

    def listener(record: dict[str, Any], epochs: int) -> None:
        nonlocal task_id
        if task_id is None:
            progress.start()
            task_id = progress.add_task("train", total=epochs, accuracy="-")
        progress.update(task_id, advance=1, accuracy=f"{record['accuracy']:.4f}")
        if record["epoch"] >= epochs:
            progress.stop()

    return listener


def cmd_ingest(args: argparse.Namespace) -> int:
    """Validate each CSV into Parquet and print its summary."""
    from mnistnn.data.ingest import ingest_csv

    processed = DataPaths(Path(args.data_dir)).processed
    for path in args.paths:
        summary = ingest_csv(path, processed, max_rejected_fraction=args.max_rejected_fraction)
        print(summary.describe())
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    """Registry commands."""
    from mnistnn.registry.store import ModelRegistry

    registry = ModelRegistry(DataPaths(Path(args.data_dir)).models)
    if args.models_command == "list":
        versions = registry.versions()
        if not versions:
            print("no models registered yet: run `mnistnn train` first")
        for version in versions:
            mark = "*" if version.is_champion else " "
            print(
                f"{mark} {version.version}  accuracy {version.accuracy:.4f}  {version.created}  "
                f"hidden {version.config.get('hidden_nodes')}  "
                f"lr {version.config.get('learning_rate')}"
            )
    elif args.models_command == "show":
        print(json.dumps(registry.get(args.version).to_dict(), indent=2))
    elif args.models_command == "promote":
        print(f"champion is now {registry.promote(args.version).version}")
    else:
        print(f"champion is now {registry.rollback().version}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a model on a labelled CSV."""
    from mnistnn.data.ingest import ingest_csv
    from mnistnn.data.parquet import load_arrays
    from mnistnn.model.metrics import evaluate_outputs
    from mnistnn.registry.store import resolve_model

    paths = DataPaths(Path(args.data_dir))
    network = resolve_model(args.model, paths.models)
    summary = ingest_csv(args.test_csv or paths.test_csv, paths.processed)
    pixels, labels = load_arrays(summary.parquet)
    scores = evaluate_outputs(network.query(pixels), labels)
    if args.json:
        print(json.dumps({k: v for k, v in scores.to_dict().items() if k != "confusion"}))
    else:
        print(
            f"{summary.source_name}: accuracy {scores.accuracy:.4f}  "
            f"confident {scores.confident:.4f}  mse {scores.mse:.5f}  ({scores.n_samples} rows)"
        )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict digits of images, folders of images, or an unlabelled CSV."""
    from mnistnn.predict import predict
    from mnistnn.predict.image import preprocess_image
    from mnistnn.registry.store import resolve_model

    if not args.images and not args.csv:
        raise MnistnnError("predict needs IMAGE paths or --csv FILE")
    network = resolve_model(args.model, DataPaths(Path(args.data_dir)).models)
    if args.csv:
        rows = predict.predict_csv(network, args.csv, args.out)
        if args.out is None:
            print("ImageId,Label")
            for image_id, label in rows:
                print(f"{image_id},{label}")
        else:
            print(f"wrote {len(rows)} predictions to {args.out}")
        return EXIT_OK
    predictions, failures = predict.predict_paths(network, args.images)
    if args.show:
        for index, item in enumerate(predictions):
            target = Path(args.show)
            if len(predictions) > 1:
                target = target.with_name(f"{target.stem}-{index + 1}{target.suffix}")
            predict.save_preview(item.path, preprocess_image(item.path), target)
    folder_mode = any(Path(p).is_dir() for p in args.images)
    _print_predictions(predictions, json_output=args.json, as_csv=folder_mode, out=args.out)
    for failure in failures:
        print(f"mnistnn: error: {failure.error}", file=sys.stderr)
    if failures:
        return EXIT_PARTIAL if predictions else EXIT_ERROR
    return EXIT_OK


def _print_predictions(
    predictions: Sequence[Any], *, json_output: bool, as_csv: bool, out: str | None
) -> None:
    if json_output:
        print(json.dumps([p.to_dict() for p in predictions]))
        return
    if as_csv or out:
        lines = ["path,digit,confidence"] + [
            f"{p.path},{p.digit},{p.confidence:.4f}" for p in predictions
        ]
        if out:
            from mnistnn.core.files import write_bytes_atomic

            write_bytes_atomic(out, ("\n".join(lines) + "\n").encode())
            print(f"wrote {len(predictions)} predictions to {out}")
        else:
            print("\n".join(lines))
        return
    for p in predictions:
        top = ", ".join(f"{digit} ({score:.2f})" for digit, score in p.top3)
        print(f"{p.path}: {p.digit}  confidence {p.confidence:.2f}  top 3: {top}")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the mnist-sweep flow and print one line per result."""
    _prefect_defaults()
    from flows.sweep import run_sweep
    from mnistnn.runs.sweep import parse_list

    paths = DataPaths(Path(args.data_dir))
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
    _prefect_defaults()
    from deployments.serve import serve

    serve()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mnistnn` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (MnistnnError, ValueError, OSError) as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"mnistnn: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mnistnn: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
