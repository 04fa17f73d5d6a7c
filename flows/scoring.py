"""`mnist-batch-predict`: resolve the models once -> find the inputs -> score each -> publish.

The champion (and the challenger that shadows it) are resolved once, at the start, and pinned by
version: every task loads exactly those versions, so a promotion during the run never mixes two
models in one output. Each input is one task (`score <file>`): it hashes the input, finds its
output already there (nothing to do) or streams it through `mnistnn.predict.batch`. An input
refused as a whole (a labelled CSV, an unreadable file) fails its own task and the others go
on; the run fails only when nothing could be scored. Tasks return small frozen records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_progress_artifact

from flows.crashes import crashed_if_terminated
from flows.parameters import declared
from flows.scoring_tasks import (
    ProgressSpan,
    discover_task,
    publish_task,
    resolve_models_task,
    score_task,
)
from flows.tasks import log_attempt, run_logger
from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.errors import ConfigError, DataError
from mnistnn.parameters import ScoringParameters, parse
from mnistnn.predict import predictions
from mnistnn.predict.inputs import Inbox, InputRefused
from mnistnn.predict.tabular import BLOCK_BYTES

PROGRESS_KEY: Final = "mnist-batch-predict-progress"
#: Inputs larger than this in all get a progress artifact, updated after every chunk.
LONG_INPUT_BYTES: Final = BLOCK_BYTES


@dataclass(frozen=True)
class InputOutcome:
    """One input's result: scored or reused (`result`), or refused with a one-line `error`."""

    file: str
    sha256: str | None
    result: predictions.ScoreResult | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.result is not None:
            return {**self.result.to_dict(), "error": None}
        return {
            "file": self.file,
            "sha256": self.sha256,
            "rows": 0,
            "scored": 0,
            "failed": 0,
            "output": None,
            "agreement": None,
            "review": None,
            "review_rows": 0,
            "reused": False,
            "error": self.error,
        }


# -- parameters ------------------------------------------------------------------------------
def inbox_of(data_dir: str, unlabelled: str | None) -> Location:
    """The inbox folder (or `s3://` prefix, where no folder exists as such: an empty prefix is
    an empty inbox), checked before any work; the values were checked by the declaration."""
    root = locations.as_location(data_dir)
    if isinstance(root, Path) and root.exists() and not root.is_dir():
        raise ConfigError(f"data_dir {root} is not a folder")
    inbox = locations.as_location(
        unlabelled if unlabelled is not None else DataPaths.at(data_dir).unlabelled
    )
    if not isinstance(inbox, Path):
        return inbox
    if inbox.exists() and not inbox.is_dir():
        raise ConfigError(f"unlabelled {inbox} is not a folder")
    if unlabelled is not None and not inbox.exists():
        raise ConfigError(f"unlabelled {inbox} does not exist (the folder of digits to score)")
    return inbox


# -- the flow --------------------------------------------------------------------------------
@flow(
    name="mnist-batch-predict",
    log_prints=False,
    on_failure=[crashed_if_terminated],
    validate_parameters=False,
)
@declared(ScoringParameters)
def batch_predict(**values: Any) -> dict[str, Any]:
    """Score every new input of the unlabelled inbox with the champion (and shadow challenger).

    The parameters are declared, with their descriptions, in `mnistnn.parameters`
    (`ScoringParameters`): `unlabelled` defaults to `<data_dir>/unlabelled`, `threshold` is the
    confidence below which a digit goes to the review queue, `challenger` a version, "none", or
    empty for the newest version that lost its promotion.
    """
    params = parse(ScoringParameters, values)
    data_dir, options = params.data.data_dir, params.scoring
    inbox_dir = inbox_of(data_dir, options.unlabelled)
    threshold, challenger, chunk_rows = options.threshold, options.challenger, options.chunk_rows
    logger = log_attempt(run_logger())
    paths = DataPaths.at(data_dir)
    models = resolve_models_task(str(paths.models), challenger)
    logger.info(
        "champion %s, challenger %s (%s)", models.champion, models.challenger, models.reason
    )
    inbox = discover_task(str(inbox_dir))
    spans = _progress_spans(inbox)
    outcomes: list[InputOutcome] = []
    for item in inbox.inputs:
        state = score_task(
            item,
            models,
            str(paths.predictions),
            str(paths.review),
            float(threshold),
            chunk_rows,
            spans.get(item.name),
            return_state=True,
        )
        try:
            result = state.result()
        except InputRefused as exc:
            logger.error("refused %s", exc)
            outcomes.append(InputOutcome(item.name, None, None, str(exc)))
            continue
        assert isinstance(result, predictions.ScoreResult)
        outcomes.append(InputOutcome(item.name, result.sha256, result))
    records = [outcome.to_dict() for outcome in outcomes]
    summary = {
        "model_version": models.champion,
        "challenger_version": models.challenger,
        "inbox": str(inbox_dir),
        "threshold": float(threshold),
        "scored_rows": sum(r["scored"] for r in records if not r.get("reused")),
        "failed_rows": sum(r["failed"] for r in records if not r.get("reused")),
        "skipped": list(inbox.skipped),
    }
    if options.publish_report:
        publish_task(summary, records)
    _fail_if_nothing_scored(outcomes)
    return {**summary, "inputs": records}


def _progress_spans(inbox: Inbox) -> dict[str, ProgressSpan]:
    """A progress artifact when the inbox is long, and each input's share of it (by size)."""
    total = sum(max(item.size, 1) for item in inbox.inputs)
    if total < LONG_INPUT_BYTES:
        return {}
    artifact = create_progress_artifact(
        progress=0.0, key=PROGRESS_KEY, description=f"Scoring {len(inbox.inputs)} input(s)"
    )
    assert isinstance(artifact, UUID)
    spans = {}
    start = 0.0
    for item in inbox.inputs:
        span = 100.0 * max(item.size, 1) / total
        spans[item.name] = ProgressSpan(str(artifact), start, span)
        start += span
    return spans


def _fail_if_nothing_scored(outcomes: list[InputOutcome]) -> None:
    """The run fails only when there were inputs and not one digit of them could be scored."""
    if not outcomes:
        return
    if any(outcome.result is not None and outcome.result.scored for outcome in outcomes):
        return
    problems = [outcome.error or f"{outcome.file}: every row failed" for outcome in outcomes]
    raise DataError("nothing could be scored: " + "; ".join(problems))


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(batch_predict())
