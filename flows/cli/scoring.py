"""`mnistnn score`: run the mnist-batch-predict flow locally (ephemeral Prefect) and summarise."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.cli.common import prefect_defaults
from mnistnn.cli.app import EXIT_OK, EXIT_PARTIAL
from mnistnn.cli.options import add_options, values
from mnistnn.config import DataPaths
from mnistnn.errors import MnistnnError
from mnistnn.inert import shown
from mnistnn.parameters import ScoringParameters, parse

#: The keys of each input in `score --json`, in order.
JSON_INPUT_KEYS = ("file", "sha256", "rows", "scored", "failed", "output", "agreement", "review")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """score."""
    score = commands.add_parser(
        "score", help="score the unlabelled inbox with the champion (mnist-batch-predict flow)"
    )
    add_options(score, ScoringParameters)
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(handler=cmd_score)


def json_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The flow's result reduced to what `score --json` promises."""
    return {
        "model_version": result["model_version"],
        "challenger_version": result["challenger_version"],
        "inputs": [
            {key: record.get(key) for key in JSON_INPUT_KEYS} for record in result["inputs"]
        ],
    }


def cmd_score(args: argparse.Namespace) -> int:
    """Run the flow; exit 2 when an input was refused or some rows failed."""
    from mnistnn.registry.store import ModelRegistry

    given = {k: v for k, v in values(args, ScoringParameters).items() if v is not None}
    params = parse(ScoringParameters, given)
    paths = DataPaths.at(params.data.data_dir)
    if ModelRegistry(paths.models).champion() is None:
        raise MnistnnError("no model trained yet: run `mnistnn train` first")
    prefect_defaults()
    from flows.scoring import batch_predict

    result = batch_predict(**given)
    records = result["inputs"]
    if args.json:
        print(json.dumps(json_summary(result)))
    else:
        _print_text(result)
    for record in records:
        if record.get("error"):
            print(f"mnistnn: error: {shown(record['error'])}", file=sys.stderr)
    partial = any(record.get("error") or record.get("failed") for record in records)
    return EXIT_PARTIAL if partial else EXIT_OK


def _print_text(result: dict[str, Any]) -> None:
    challenger = result["challenger_version"]
    print(
        f"model {result['model_version']}"
        + (f", challenger {challenger}" if challenger else ", no challenger")
        + f"; inbox {shown(result['inbox'])}"
    )
    if not result["inputs"]:
        print("nothing to score: the inbox is empty")
    for record in result["inputs"]:
        if record.get("error"):
            print(f"  {shown(record['file'])}: refused")
            continue
        status = "already scored" if record.get("reused") else "scored"
        agreement = record.get("agreement")
        shadow = "" if agreement is None else f", agreement {agreement:.2%}"
        print(
            f"  {shown(record['file'])}: {status}: {record['rows']} rows, "
            f"{record['scored']} scored, {record['failed']} failed, "
            f"{record['review_rows']} to review{shadow}"
        )
        print(f"    predictions: {shown(record['output'])}")
        if record.get("review"):
            print(f"    review:      {shown(record['review'])}")
        if record.get("failures_file"):
            print(f"    failures:    {shown(record['failures_file'])}")
