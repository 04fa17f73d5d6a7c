"""`mnist-training`: ingest -> train epochs with checkpoints -> evaluate -> register -> publish.

Every step is its own retryable task that finds its own output on disk first, so a retry, a re-run
after a crash (even SIGKILL) or a second run of a finished configuration resumes from the last valid
checkpoint and redoes nothing else. Tasks exchange paths and small typed records, never arrays.
In the UI's run graph the epochs form a chain (each waits for the previous one) with each
scored epoch's evaluation hanging off it.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows import training_steps as steps
from flows.crashes import crashed_if_terminated
from flows.parameters import declared
from flows.tasks import log_attempt, run_logger
from flows.training_steps import epoch_listener
from flows.training_tasks import (
    finish_run_task,
    publish_new_data_task,
    publish_task,
    warm_start_task,
)
from mnistnn.config import DataPaths
from mnistnn.parameters import TrainingParameters, flat, parse
from mnistnn.runs.folders import run_folder, run_lock
from mnistnn.runs.records import RunResult

__all__ = ["epoch_listener", "train_pipeline"]


@flow(
    name="mnist-training",
    log_prints=False,
    on_failure=[crashed_if_terminated],
    validate_parameters=False,
)
@declared(TrainingParameters)
def train_pipeline(**values: Any) -> RunResult:
    """Train the MNIST network, checkpointing every epoch, and publish the results.

    The parameters are declared once, with their descriptions, in `mnistnn.parameters`
    (`TrainingParameters`). Every network parameter left empty takes the preset's value, or the
    book's reference value without a preset; a value given explicitly always wins. The training
    data is a snapshot: `train_csv` plus every accepted batch of the inbox.
    """
    params = parse(TrainingParameters, values)
    resolved = params.network.resolve()
    log_attempt(run_logger()).info("settings: %s", resolved.describe())
    paths = DataPaths.at(params.data.data_dir)
    clock = steps.Stopwatch()
    train, test = steps.ingest(params, paths)
    clock.lap("ingest")
    new = steps.new_data(params, paths, train, test)
    warm = warm_start_task(str(paths.models), resolved.config) if params.run.warm_start else None
    lineage = steps.lineage(train, test, new, resolved, warm, params)
    clock.lap("inbox")
    key = None if warm is None else warm.key()
    folder = run_folder(paths.runs, resolved.config, new.snapshot.sha256, test.sha256, key)
    with run_lock(folder):
        folder, resume, initial = steps.open_folder(
            folder, resolved, new, test, warm, params.run.fresh
        )
        steps.train_and_evaluate(
            folder, resolved, resume, new.snapshot.train_data, test, lineage,
            params.run, initial,
        )  # fmt: skip
        clock.lap("train_and_evaluate")
        records = finish_run_task(str(folder.path), resolved.epochs)
        recent, lineage = steps.recent(
            folder, paths, new, lineage, params.promotion.promote_on_recent
        )
        decision = steps.register(folder, paths, test, lineage, params.promotion, recent)
        clock.lap("register")
        if params.run.publish_report:
            publish_task(str(folder.path), test.parquet, lineage, decision)
            if new.batches:
                publish_new_data_task(new.batch_rows(), new.snapshot.sha256)
        clock.lap("publish")
    return RunResult(
        run_dir=str(folder.path),
        epochs=resolved.epochs,
        metrics=tuple(records),
        settings=resolved.settings(),
        parameters=flat(params),
        decision=decision,
        flow_run_id=flow_run.get_id(),
        trained_epochs=tuple(range(resume + 1, resolved.epochs + 1)),
        timings=clock.laps,
        snapshot=steps.snapshot_summary(new, recent),
        warm_start=lineage.warm_start,
    )


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(train_pipeline())
