"""The tasks of `mnist-batch-predict`: resolve the models, discover, score one input, publish.

Each returns a small frozen record. `score_task` loads exactly the versions `resolve_models_task`
pinned (once per process), and streams its input through `mnistnn.predict.batch`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.tasks import RETRYABLE, run_logger
from mnistnn.errors import CheckpointError, ConfigError, RegistryError, StorageError
from mnistnn.inert import shown
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict import batch, predictions, refusals, review
from mnistnn.predict.inputs import (
    Inbox,
    InboxInput,
    InputRefused,
    discover,
    identify,
    localise,
)
from mnistnn.registry.store import ModelRegistry

TABLE_KEY: Final = "mnist-batch-predictions"
REPORT_KEY: Final = "mnist-batch-predict-report"
#: Digits shown in each grid of the report.
GRID_DIGITS: Final = 24
_NO_MODEL: Final = "no model trained yet: run `mnistnn train` first"


@dataclass(frozen=True)
class PinnedModels:
    """The versions this run uses, fixed at its start."""

    models_dir: str
    champion: str
    challenger: str | None
    reason: str


@dataclass(frozen=True)
class ProgressSpan:
    """Where one input's progress lands in the run's progress artifact (0..100)."""

    artifact_id: str
    start: float
    span: float


# -- tasks -----------------------------------------------------------------------------------
@task(name="resolve-models", task_run_name="resolve models", **RETRYABLE)
def resolve_models_task(models_dir: str, challenger: str | None) -> PinnedModels:
    """The champion, and the challenger: the one named, or the newest version registered after
    the champion that lost its promotion (None with `challenger="none"`)."""
    registry = ModelRegistry(models_dir)
    champion, latest = registry.pinned()
    if champion is None:
        raise RegistryError(_NO_MODEL)
    if challenger == "none":
        return PinnedModels(models_dir, champion.version, None, "no challenger (none asked)")
    if challenger is not None:
        named = registry.get(challenger)
        if named.version == champion.version:
            raise ConfigError(f"challenger {challenger} is the champion; name another version")
        return PinnedModels(models_dir, champion.version, named.version, "named challenger")
    if latest is None:
        return PinnedModels(models_dir, champion.version, None, "no challenger registered")
    return PinnedModels(
        models_dir, champion.version, latest.version, "newest version that lost its promotion"
    )


@task(name="discover-inbox", task_run_name="discover inbox", **RETRYABLE)
def discover_task(inbox: str) -> Inbox:
    """The inputs of the inbox folder."""
    found = discover(inbox)
    logger = run_logger()
    for skipped in found.skipped:
        logger.warning("skipped %s", shown(skipped))
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
) -> predictions.ScoreResult:
    """Identify one input and score it with the pinned models (nothing to do if already done).

    No poison pill: whatever reading this input raises (a limit, bad data, MemoryError, an
    unexpected library error) becomes InputRefused with one line, so that the flow records it
    as this input's failure and scores the others; only the store's transient errors are
    retried.
    """
    try:
        return _score_one(
            item, models, predictions_dir, review_dir, threshold, chunk_rows, progress
        )
    except (InputRefused, ConfigError, RegistryError, CheckpointError, StorageError, OSError):
        raise  # refused already, or the run's problem (a setting, the model, the store)
    except refusals.REFUSALS as exc:
        raise InputRefused(refusals.reason(item.name, exc)) from exc


def _score_one(
    item: InboxInput,
    models: PinnedModels,
    predictions_dir: str,
    review_dir: str,
    threshold: float,
    chunk_rows: int,
    progress: ProgressSpan | None,
) -> predictions.ScoreResult:
    logger = run_logger()
    item = localise(item)  # an object is downloaded once, then hashed and read locally
    sha256 = identify(item)
    name = shown(item.name)
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
        logger.info("%s (sha256 %s) already scored: %s", name, sha256[:16], result.output)
    else:
        logger.info(
            "%s: %d rows, %d scored, %d failed, %d to review, in %.2f s -> %s",
            name,
            result.rows,
            result.scored,
            result.failed,
            result.review_rows,
            result.seconds,
            result.output,
        )
    for source, row, reason in () if result.reused else result.first_failures[:5]:
        where = shown(source) + ("" if row is None else f" row {row}")
        logger.warning("failed %s: %s", where, shown(reason))
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
        summary, records, _first(least), _first(disagree), predictions.PROBABILITIES
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
