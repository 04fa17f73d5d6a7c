"""`mnistnn sweep` (the mnist-sweep flow on Dask) and `mnistnn serve` (flow.serve)."""

from __future__ import annotations

import argparse
import json

from flows.cli.common import check_store, prefect_defaults
from mnistnn.cli.app import EXIT_OK, positive_int
from mnistnn.config import DataPaths


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """sweep and serve."""
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
