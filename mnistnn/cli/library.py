"""Commands that call the library directly: ingest, models, evaluate, predict."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistnn.cli.app import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from mnistnn.cli.models import add_models
from mnistnn.config import DataPaths
from mnistnn.data.ingest import check_fraction
from mnistnn.errors import MnistnnError, one_line
from mnistnn.inert import cell, shown


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """ingest, models, evaluate and predict."""
    ingest = commands.add_parser("ingest", help="validate MNIST CSVs into Parquet")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--max-rejected-fraction", type=float, default=0.0)
    ingest.set_defaults(handler=cmd_ingest)

    add_models(commands)

    evaluate = commands.add_parser("evaluate", help="score a model on a labelled test CSV")
    _model_option(evaluate)
    evaluate.add_argument(
        "--test-csv", default=None, help="labelled CSV (default: bundled test set)"
    )
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="recognise digits in images or a CSV")
    predict.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    _model_option(predict)
    predict.add_argument("--csv", default=None, help="unlabelled CSV of 784 pixel columns")
    predict.add_argument("--out", default=None, help="output CSV (folder or --csv mode)")
    predict.add_argument(
        "--show", default=None, metavar="OUT.png", help="save what the network saw"
    )
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=cmd_predict)


def _model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="version, .npz or checkpoint (default: champion)"
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    """Validate each CSV into Parquet and print its summary."""
    from mnistnn.data.remote import ingest_location as ingest_csv

    processed = DataPaths.at(args.data_dir).processed
    check_fraction(args.max_rejected_fraction)
    failed = 0
    for path in args.paths:  # one bad file never stops the others: each failure is one line
        try:
            summary = ingest_csv(path, processed, max_rejected_fraction=args.max_rejected_fraction)
        except (MnistnnError, MemoryError, RecursionError) as exc:
            failed += 1
            print(f"mnistnn: error: {shown(one_line(exc))}", file=sys.stderr)
            continue
        print(summary.describe())
    if not failed:
        return EXIT_OK
    return EXIT_ERROR if failed == len(args.paths) else EXIT_PARTIAL


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a model on a labelled CSV."""
    from mnistnn.data.parquet import load_arrays
    from mnistnn.data.remote import ingest_location as ingest_csv
    from mnistnn.model.metrics import evaluate_outputs
    from mnistnn.registry.resolve import resolve_model

    paths = DataPaths.at(args.data_dir)
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
    from mnistnn.predict.preview import save_preview
    from mnistnn.registry.resolve import resolve_model

    if not args.images and not args.csv:
        raise MnistnnError("predict needs IMAGE paths or --csv FILE")
    network = resolve_model(args.model, DataPaths.at(args.data_dir).models)
    if args.csv:
        digits = predict.predict_csv(network, args.csv, args.out)
        if args.out is None:
            sys.stdout.writelines(predict.submission_lines(digits))
        else:
            print(f"wrote {len(digits)} predictions to {shown(args.out)}")
        return EXIT_OK
    predictions, failures = predict.predict_paths(network, args.images)
    if args.show:
        for index, item in enumerate(predictions):
            target = Path(args.show)
            if len(predictions) > 1:
                target = target.with_name(f"{target.stem}-{index + 1}{target.suffix}")
            save_preview(item.path, preprocess_image(item.path), target)
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
    if as_csv or out:  # a CSV people open: quoted, formula-safe paths
        lines = ["path,digit,confidence"] + [
            f"{_csv_cell(shown(p.path))},{p.digit},{p.confidence:.4f}" for p in predictions
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
        print(f"{shown(p.path)}: {p.digit}  confidence {p.confidence:.2f}  top 3: {top}")


def _csv_cell(value: str) -> str:
    """One CSV field, spreadsheet-safe, quoted when it holds a comma or a quote."""
    value = cell(value)
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"') else value
