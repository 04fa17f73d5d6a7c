"""Typed records that cross step and task boundaries: an epoch's scores, the data lineage, a
warm start and what a whole run answers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mnistnn.data.ingest import IngestSummary


@dataclass(frozen=True)
class EpochRecord:
    """One trained epoch: what the log line, the progress bar, metrics.json and `--json` show.

    An epoch the evaluation schedule skipped (`evaluate_every`) has its training time and None
    for every score: the report shows a gap there, never an interpolated value.
    """

    epoch: int
    accuracy: float | None
    confident: float | None
    mse: float | None
    train_seconds: float
    eval_seconds: float | None

    @classmethod
    def from_eval(cls, record: dict[str, Any]) -> EpochRecord:
        """The summary fields of a stored evaluation (which also holds the confusion matrix)."""
        return cls(**{field.name: record[field.name] for field in dataclasses.fields(cls)})

    @classmethod
    def unscored(cls, epoch: int, train_seconds: float) -> EpochRecord:
        """An epoch that was trained but not scored on the test set."""
        return cls(epoch, None, None, None, train_seconds, None)

    @property
    def scored(self) -> bool:
        return self.accuracy is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self, epochs: int) -> str:
        """`epoch 3/15  accuracy 0.9640  confident 0.8556  train 0.55 s` (`not scored` instead
        of the scores for an epoch the schedule skipped)."""
        scores = (
            f"accuracy {self.accuracy:.4f}  confident {self.confident:.4f}"
            if self.accuracy is not None and self.confident is not None
            else "not scored"
        )
        return f"epoch {self.epoch}/{epochs}  {scores}  train {self.train_seconds:.2f} s"


#: The score fields an earlier epoch's checkpoint carries forward (no timings).
SCORE_FIELDS = ("epoch", "accuracy", "confident", "mse")


@dataclass(frozen=True)
class DataLineage:
    """Which data file a run used, as checkpoints, the registry and the report record it."""

    role: str
    source_name: str
    sha256: str
    rows_read: int
    rows_accepted: int
    rows_rejected: int

    @classmethod
    def of(cls, summary: IngestSummary, role: str) -> DataLineage:
        return cls(
            role,
            summary.source_name,
            summary.sha256,
            summary.rows_read,
            summary.rows_accepted,
            summary.rows_rejected,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunLineage:
    """The data of a run and how its settings were resolved (preset, explicit values).

    With batches from the inbox, `train` is the snapshot (its sha256 is the run key's) and
    `snapshot` lists its members by file name and sha256; `warm_start` names the model that
    epoch 1 started from; `parameters` holds every declared parameter of the run as given (the
    report's "Run parameters"). Each is left out of `to_dict` when absent, so a run without
    them records exactly what it always did.
    """

    train: DataLineage
    test: DataLineage
    settings: str = "the reference defaults; explicitly set: nothing"
    snapshot: dict[str, Any] | None = None
    warm_start: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "train": self.train.to_dict(),
            "test": self.test.to_dict(),
            "settings": self.settings,
        }
        if self.snapshot is not None:
            data["snapshot"] = self.snapshot
        if self.warm_start is not None:
            data["warm_start"] = self.warm_start
        if self.parameters is not None:
            data["parameters"] = self.parameters
        return data


@dataclass(frozen=True)
class WarmStart:
    """The champion a warm-started run begins with: its version and weights (file and sha256)."""

    version: str
    weights_sha256: str
    weights: str

    def key(self) -> dict[str, Any]:
        """What keys the run folder (the weights' path does not: it differs per machine)."""
        return {"version": self.version, "weights_sha256": self.weights_sha256}

    def lineage(self) -> dict[str, Any]:
        """What the lineage, checkpoints and `--json` record."""
        return {**self.key(), "mode": "warm_start"}


@dataclass(frozen=True)
class RunResult:
    """What a training run answers (`mnistnn train --json`): built by the flow when it ran and
    by `registry.answer` when a finished run is answered without a server (`ran` False)."""

    run_dir: str
    epochs: int
    metrics: tuple[EpochRecord, ...]
    settings: dict[str, Any]
    parameters: dict[str, Any] | None
    decision: dict[str, Any] | None
    ran: bool = True
    reason: str | None = None
    flow_run_id: str | None = None
    trained_epochs: tuple[int, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    warm_start: dict[str, Any] | None = None
    ui_link: str | None = None

    @property
    def accuracy(self) -> float | None:
        return self.metrics[-1].accuracy

    @property
    def confident(self) -> float | None:
        return self.metrics[-1].confident

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field, the final scores, and each epoch as a dict."""
        data = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        data["metrics"] = [record.to_dict() for record in self.metrics]
        data["trained_epochs"] = list(self.trained_epochs)
        return {**data, "accuracy": self.accuracy, "confident": self.confident}
