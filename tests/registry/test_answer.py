"""The no-server answer: a finished, registered run answers from disk; anything else runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mnistnn.config import DataPaths
from mnistnn.data.ingest import ingest_csv
from mnistnn.presets import resolve
from mnistnn.registry.answer import data_identity, existing_result
from mnistnn.registry.from_run import register_run
from mnistnn.runs import steps
from mnistnn.runs.folders import open_run, run_folder
from mnistnn.runs.records import DataLineage, RunLineage, RunResult

HIDDEN = 12


def finish(
    small_csvs: tuple[Path, Path], root: Path, epochs: int = 2, every: int = 1
) -> dict[str, Any]:
    """Train, score, finish and register a run with the library's steps (what the flow does)."""
    paths = DataPaths(root)
    train = ingest_csv(small_csvs[0], paths.processed)
    test = ingest_csv(small_csvs[1], paths.processed)
    resolved = resolve(None, {"hidden_nodes": HIDDEN, "epochs": epochs})
    folder = open_run(
        run_folder(paths.runs, resolved.config, train.sha256, test.sha256),
        resolved.config,
        train.sha256,
        test.sha256,
    )
    for epoch in range(1, epochs + 1):
        steps.train_epoch(folder, epoch, resolved.config, train.parquet)
        if steps.is_scheduled(epoch, epochs, every):
            steps.evaluate_epoch(folder, epoch, test.parquet)
    steps.finish_run(folder, epochs)
    folder.report.write_text("# report\n", encoding="utf-8")
    lineage = RunLineage(DataLineage.of(train, "train"), DataLineage.of(test, "test"))
    return {
        "paths": paths,
        "folder": folder,
        "train": train.sha256,
        "test": test.sha256,
        "register": lambda: register_run(folder, paths.models, test.parquet, lineage),
    }


def ask(run: dict[str, Any], epochs: int = 2, every: int = 1, **options: Any):  # type: ignore[no-untyped-def]
    resolved = resolve(None, {"hidden_nodes": HIDDEN, "epochs": epochs, "evaluate_every": every})
    train = options.pop("train", run["train"])
    return existing_result(run["paths"], resolved, train, run["test"], **options)


def test_finished_registered_run_answers(small_csvs, tmp_path: Path) -> None:
    run = finish(small_csvs, tmp_path)
    decision = run["register"]()
    answer = ask(run)
    assert answer is not None
    assert isinstance(answer.result, RunResult)  # the flow's own result type: one author
    result = answer.result.to_dict()
    assert result["ran"] is False and result["trained_epochs"] == []
    assert result["run_dir"] == str(run["folder"].path)
    metrics = json.loads(run["folder"].metrics_json.read_text())["metrics"]
    assert result["metrics"] == metrics
    assert result["accuracy"] == metrics[-1]["accuracy"]
    assert result["decision"]["version"] == decision["version"] == "v0001"
    assert result["decision"]["reason"].startswith("already registered as v0001")
    assert "nothing to run" in answer.line
    assert data_identity(small_csvs[0]) == run["train"]
    json.dumps(result)  # --json prints it


def test_not_registered_runs(small_csvs, tmp_path: Path) -> None:
    run = finish(small_csvs, tmp_path)
    assert ask(run) is None


@pytest.mark.parametrize("change", ["more epochs", "other data", "fresh", "report", "weights"])
def test_anything_missing_or_different_runs(small_csvs, tmp_path: Path, change: str) -> None:
    run = finish(small_csvs, tmp_path)
    run["register"]()
    if change == "more epochs":
        assert ask(run, epochs=3) is None
    elif change == "other data":
        assert ask(run, train="0" * 64) is None
    elif change == "fresh":
        assert ask(run, fresh=True) is None
    elif change == "report":
        run["folder"].report.unlink()
        assert ask(run) is None
    else:
        run["folder"].weights.write_bytes(b"not the weights")
        assert ask(run) is None


def test_missing_scored_epoch_runs(small_csvs, tmp_path: Path) -> None:
    run = finish(small_csvs, tmp_path)
    run["register"]()
    summary = json.loads(run["folder"].metrics_json.read_text())
    summary["metrics"] = summary["metrics"][:1]
    run["folder"].metrics_json.write_text(json.dumps(summary))
    assert ask(run) is None


def test_fewer_epochs_answer_from_the_shorter_run_only_when_it_exists(
    small_csvs, tmp_path: Path
) -> None:
    run = finish(small_csvs, tmp_path)
    run["register"]()
    assert ask(run, epochs=1) is None  # no upto-0001 folder yet: the flow makes it


def test_answer_needs_every_scheduled_score(small_csvs, tmp_path: Path) -> None:
    run = finish(small_csvs, tmp_path, epochs=3, every=2)
    run["register"]()
    answer = ask(run, epochs=3, every=2)
    assert answer is not None
    assert [row["accuracy"] is None for row in answer.result.to_dict()["metrics"]] == [
        True,
        False,
        False,
    ]
    assert ask(run, epochs=3, every=3) is not None  # a sparser schedule: all it needs is there
    assert ask(run, epochs=3, every=1) is None  # epoch 1 was never scored: the flow decides
