"""`mnist-batch-predict`: resolve the models once -> find the inputs -> score each -> publish.

The champion (and the challenger that shadows it) are resolved once, at the start, and pinned by
version: every task loads exactly those versions, so a promotion during the run never mixes two
models in one output. Each input is one task (`score <file>`): it hashes the input, finds its
output already there (nothing to do) or streams it through `mnistnn.predict.batch`. An input
refused as a whole (a labelled CSV, an unreadable file) fails its own task and the others go
on; the run fails only when nothing could be scored. Tasks return small frozen records.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.tasks import RETRYABLE, run_logger
from mnistnn.config import DataPaths
from mnistnn.errors import ConfigError, DataError, RegistryError
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict import batch, review
from mnistnn.predict.inputs import BLOCK_BYTES, Inbox, InboxInput, InputRefused, discover, identify
from mnistnn.registry.store import ModelRegistry

TABLE_KEY: Final = "mnist-batch-predictions"
REPORT_KEY: Final = "mnist-batch-predict-report"
PROGRESS_KEY: Final = "mnist-batch-predict-progress"
#: Inputs larger than this in all get a progress artifact, updated after every chunk.
LONG_INPUT_BYTES: Final = BLOCK_BYTES
#: Digits shown in each grid of the report.
GRID_DIGITS: Final = 24
_VERSION: Final = re.compile(r"^v\d{4,}$")
_NO_MODEL: Final = "no model trained yet: run `mnistnn train` first"


@dataclass(frozen=True)
class PinnedModels:
    """The versions this run uses, fixed at its start."""

    models_dir: str
    champion: str
    challenger: str | None
    reason: str


@dataclass(frozen=True)
class InputOutcome:
    """One input's result: scored or reused (`result`), or refused with a one-line `error`."""

    file: str
    sha256: str | None
    result: batch.ScoreResult | None
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


@dataclass(frozen=True)
class ProgressSpan:
    """Where one input's progress lands in the run's progress artifact (0..100)."""

    artifact_id: str
    start: float
    span: float


# -- parameters ------------------------------------------------------------------------------
def check_parameters(
    data_dir: str, unlabelled: str | None, threshold: float, challenger: str | None, chunk_rows: int
) -> Path:
    """Validate every parameter before any work; returns the inbox folder."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise ConfigError(f"threshold must be a number in 0..1, got {threshold!r}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if challenger is not None and challenger != "none" and not _VERSION.match(challenger):
        raise ConfigError(
            f"challenger must be a version such as v0002, or none; got {challenger!r}"
        )
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"data_dir {root} is not a folder")
    inbox = Path(unlabelled) if unlabelled is not None else DataPaths(root).unlabelled
    if inbox.exists() and not inbox.is_dir():
        raise ConfigError(f"unlabelled {inbox} is not a folder")
    if unlabelled is not None and not inbox.exists():
        raise ConfigError(f"unlabelled {inbox} does not exist (the folder of digits to score)")
    return inbox


# -- tasks -----------------------------------------------------------------------------------
@task(name="resolve-models", task_run_name="resolve models", **RETRYABLE)
def resolve_models_task(models_dir: str, challenger: str | None) -> PinnedModels:
    """The champion, and the challenger: the one named, or the newest version registered after
    the champion that lost its promotion (None with `challenger="none"`)."""
    registry = ModelRegistry(models_dir)
    champion = registry.champion()
    if champion is None:
        raise RegistryError(_NO_MODEL)
    if challenger == "none":
        return PinnedModels(models_dir, champion.version, None, "no challenger (none asked)")
    if challenger is not None:
        named = registry.get(challenger)
        if named.version == champion.version:
            raise ConfigError(f"challenger {challenger} is the champion; name another version")
        return PinnedModels(models_dir, champion.version, named.version, "named challenger")
    versions = registry.versions()
    newer = versions[[v.version for v in versions].index(champion.version) + 1 :]
    losers = [v for v in newer if v.decision is not None and not v.decision.promoted]
    if not losers:
        return PinnedModels(models_dir, champion.version, None, "no challenger registered")
    latest = losers[-1]
    return PinnedModels(
        models_dir, champion.version, latest.version, "newest version that lost its promotion"
    )


@task(name="discover-inbox", task_run_name="discover inbox", **RETRYABLE)
def discover_task(inbox: str) -> Inbox:
    """The inputs of the inbox folder."""
    found = discover(inbox)
    logger = run_logger()
    for skipped in found.skipped:
        logger.warning("skipped %s", skipped)
    logger.info("inbox %s: %d input(s)", inbox, len(found.inputs))
    return found


@task(name="score-input", task_run_name="score {item.name}", **RETRYABLE)
def score_task(
    item: InboxInput,
    models: PinnedModels,
    predictions_dir: str,
    review_dir: str,
    threshold: float,
    chunk_rows: int,
    progress: ProgressSpan | None,
) -> batch.ScoreResult:
    """Identify one input and score it with the pinned models (nothing to do if already done)."""
    logger = run_logger()
    sha256 = identify(item)
    champion = batch.PinnedModel(models.champion, _load(models.models_dir, models.champion))
    challenger = (
        None
        if models.challenger is None
        else batch.PinnedModel(models.challenger, _load(models.models_dir, models.challenger))
    )
    result = batch.score_input(
        item,
        sha256,
        champion,
        challenger,
        predictions_dir=predictions_dir,
        review_dir=review_dir,
        threshold=threshold,
        chunk_rows=chunk_rows,
        progress=_reporter(progress),
    )
    if result.reused:
        logger.info("%s (sha256 %s) already scored: %s", item.name, sha256[:16], result.output)
    else:
        logger.info(
            "%s: %d rows, %d scored, %d failed, %d to review, in %.2f s -> %s",
            item.name,
            result.rows,
            result.scored,
            result.failed,
            result.review_rows,
            result.seconds,
            result.output,
        )
    for source, row, reason in () if result.reused else result.first_failures[:5]:
        logger.warning("failed %s%s: %s", source, "" if row is None else f" row {row}", reason)
    return result


@functools.lru_cache(maxsize=4)
def _load(models_dir: str, version: str) -> NeuralNetwork:
    """A pinned version's network (its weights' sha256 verified), loaded once per process."""
    return ModelRegistry(models_dir).load(version)


def _reporter(progress: ProgressSpan | None) -> batch.Progress | None:
    if progress is None:
        return None
    artifact = UUID(progress.artifact_id)
    last = [0.0]

    def report(done: float) -> None:
        now = time.monotonic()
        if done < 1.0 and now - last[0] < 0.5:
            return
        last[0] = now
        update_progress_artifact(artifact, progress.start + progress.span * min(done, 1.0))

    return report


@task(name="publish-scoring", task_run_name="publish scoring report", **RETRYABLE)
def publish_task(summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """The per-input table and the markdown report (with the review queue's digit grids)."""
    from mnistnn.report.scoring import scoring_report, table_rows

    least: list[review.Digits] = []
    disagree: list[review.Digits] = []
    for record in records:
        if record.get("review") and not record.get("reused"):
            low, split = review.review_digits(record["review"], GRID_DIGITS)
            least.append(low)
            disagree.append(split)
    markdown = scoring_report(
        summary, records, _first(least), _first(disagree), batch.PROBABILITIES
    )
    create_table_artifact(
        key=TABLE_KEY,
        table=table_rows(records),
        description=f"Batch predictions by {summary['model_version']}, per input",
    )
    create_markdown_artifact(
        key=REPORT_KEY,
        markdown=markdown,
        description=(
            f"{summary['scored_rows']:,} digits scored by {summary['model_version']} "
            f"({summary['failed_rows']:,} failed)"
        ),
    )


def _first(groups: list[review.Digits]) -> tuple[Any, list[str]]:
    """Up to GRID_DIGITS digits from the inputs' groups, in input order."""
    import numpy as np

    pixels = [group.pixels for group in groups if len(group.captions)]
    captions = [caption for group in groups for caption in group.captions]
    if not pixels:
        return np.empty((0, 784), dtype=np.uint8), []
    return np.concatenate(pixels)[:GRID_DIGITS], captions[:GRID_DIGITS]


# -- the flow --------------------------------------------------------------------------------
@flow(name="mnist-batch-predict", log_prints=False)
def batch_predict(
    data_dir: str = "data",
    unlabelled: str | None = None,
    threshold: float = batch.DEFAULT_THRESHOLD,
    challenger: str | None = None,
    chunk_rows: int = batch.CHUNK_ROWS,
    publish_report: bool = True,
) -> dict[str, Any]:
    """Score every new input of the unlabelled inbox with the champion (and shadow challenger).

    `unlabelled` defaults to `<data_dir>/unlabelled`; `threshold` is the confidence below which
    a digit goes to the review queue; `challenger` is a version, "none", or empty for the
    newest version that lost its promotion; `chunk_rows` rows per Parquet row group.
    """
    inbox_dir = check_parameters(data_dir, unlabelled, threshold, challenger, chunk_rows)
    logger = run_logger()
    paths = DataPaths(Path(data_dir))
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
        assert isinstance(result, batch.ScoreResult)
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
    if publish_report:
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
