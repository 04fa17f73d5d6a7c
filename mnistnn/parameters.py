"""Every parameter of a training, scoring and inbox-watch run, declared once, grouped by concern.

Each field states its type, default, allowed values or bounds, description, CLI flag (a `Flag`
in its `Annotated` metadata) and the library's own check (an `AfterValidator`). Everything else
is derived from these models: the `mnistnn train|score|watch` options (`mnistnn.cli.options`),
the flows' parameters and so the Prefect UI form (`flows.parameters.flow_signature`), the
validation (`parse`, run by the CLI before any server starts and by the flow at its start) and
the settings a run records (`flat`, in the report and `--json`).

Network fields default to None ("the preset's value, else the reference's": `presets.resolve`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from mnistnn.data.inbox import DEFAULT_SETTLE_SECONDS, check_settle_seconds
from mnistnn.data.ingest import check_fraction
from mnistnn.data.split import check_recent_fraction
from mnistnn.errors import ConfigError
from mnistnn.predict.batch import CHUNK_ROWS, DEFAULT_THRESHOLD
from mnistnn.presets import PRESETS, SETTINGS, Resolved, resolve
from mnistnn.registry import policy as gate
from mnistnn.registry.promotion import check_min_delta
from mnistnn.runs.drift import DEFAULT_THRESHOLD as DEFAULT_DRIFT_THRESHOLD
from mnistnn.runs.drift import check_threshold
from mnistnn.runs.steps import check_keep


@dataclass(frozen=True)
class Flag:
    """The CLI option of a parameter: `--hidden` for hidden_nodes; `global_option` names one
    the `mnistnn` parser already has (`--data-dir`); `name=None` means no flag at all."""

    name: str | None
    global_option: bool = False


Positive = Annotated[int, Field(ge=1)]


class Group(BaseModel):
    """One concern's parameters: frozen, unknown names refused."""

    # strict: a bool is no number, "5" no integer (argparse and JSON give the right types)
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Location(Group):
    """Where the data is."""

    data_dir: Annotated[str, Flag("--data-dir", global_option=True)] = Field(
        "data", description="data folder: a local path or an s3://bucket/prefix URL"
    )


class InboxLocation(Location):
    """Where the labelled inbox and the base training data are."""

    incoming_dir: Annotated[str | None, Flag("--incoming")] = Field(
        None, description="the labelled inbox of new batches (default: <data_dir>/incoming)"
    )
    train_csv: str | None = Field(
        None, description="training CSV, a path or s3:// URL (default: <data_dir>/raw/...)"
    )


class DataParams(InboxLocation):
    """Where a training run's data is."""

    test_csv: str | None = Field(
        None, description="test CSV, a path or s3:// URL (default: <data_dir>/raw/...)"
    )


class NetworkParams(Group):
    """What is trained: a preset, then every value given explicitly on top of it."""

    preset: Literal["reference", "best"] | None = Field(
        None, description="named settings; every value given explicitly wins over the preset's"
    )
    epochs: Positive | None = Field(None, description="epochs to train")
    hidden_nodes: Annotated[Positive | None, Flag("--hidden")] = Field(
        None, description="hidden nodes"
    )
    learning_rate: Annotated[float | None, Flag("--lr")] = Field(
        None, gt=0, description="learning rate"
    )
    seed: int | None = Field(None, ge=0, lt=2**32, description="random seed")
    init: Literal["legacy", "default"] | None = Field(None, description="weight initialisation")
    dtype: Literal["float64", "float32"] | None = Field(None, description="floating-point type")
    batch_size: Positive | None = Field(None, description="mini-batch size")
    output: Literal["sigmoid", "softmax"] | None = Field(None, description="output layer")
    biases: bool | None = Field(None, description="train biases")
    momentum: float | None = Field(None, ge=0, lt=1, description="momentum in [0, 1)")
    schedule: Literal["constant", "step", "cosine"] | None = Field(
        None, description="learning-rate schedule"
    )
    schedule_epochs: Positive | None = Field(
        None, description="epochs the schedule is laid out over"
    )
    shuffle: bool | None = Field(None, description="shuffle every epoch")
    augment: Literal["none", "affine", "elastic"] | None = Field(
        None, description="augmentation regenerated each epoch"
    )
    evaluate_every: Positive | None = Field(None, description="score every N-th epoch and the last")

    @model_validator(mode="after")
    def _resolvable(self) -> NetworkParams:
        self.resolve()  # NetworkConfig's own checks, with the preset applied
        return self

    def resolve(self) -> Resolved:
        """The configuration this run trains: defaults, then the preset, then explicit values."""
        return resolve(self.preset, self.model_dump(exclude={"preset"}))


class InboxChecks(Group):
    """How new batches of the labelled inbox are taken in and checked."""

    max_rejected_fraction: Annotated[float, AfterValidator(check_fraction)] = Field(
        0.0, description="share of an input file's rows that may be rejected (0..1)"
    )
    settle_seconds: Annotated[float, AfterValidator(check_settle_seconds)] = Field(
        DEFAULT_SETTLE_SECONDS,
        description="local inbox files modified more recently wait for the next pass",
    )
    drift_threshold: Annotated[float, AfterValidator(check_threshold)] = Field(
        DEFAULT_DRIFT_THRESHOLD,
        description="accuracy drop (0..1) on a batch that flags it as drift",
    )


class InboxParams(InboxChecks):
    """The inbox checks, and the share of each batch a training run holds out."""

    recent_fraction: Annotated[float, AfterValidator(check_recent_fraction)] = Field(
        0.1, description="share (0..0.5) of each batch held out as recent test data"
    )


class PromotionParams(Group):
    """Whether and how the new model may replace the champion."""

    register_model: bool = Field(True, description="hand the final model to the registry")
    min_delta: Annotated[float, AfterValidator(check_min_delta)] = Field(
        0.0, description="margin (>= 0) by which the new model must beat the champion"
    )
    promote_on_recent: bool = Field(
        False, description="compare with the champion on the recent test data, not the test set"
    )
    policy: gate.Policy = Field(
        gate.DEFAULT_POLICY,
        description="significant: promote only when McNemar's exact test says the new model is "
        "better (p < alpha); better: accuracy >= the champion's + min_delta",
    )
    alpha: Annotated[float, AfterValidator(gate.check_alpha)] = Field(
        gate.DEFAULT_ALPHA, description="significance level (0..1) of the significant policy"
    )
    min_accuracy: Annotated[float, AfterValidator(gate.check_min_accuracy)] = Field(
        0.0, description="no model below this test accuracy (0..1) becomes champion"
    )
    approval: gate.Approval = Field(
        "auto", description="ask: a close call pauses the run until a person approves or rejects"
    )
    approval_timeout: Annotated[float, AfterValidator(gate.check_approval_timeout)] = Field(
        gate.DEFAULT_APPROVAL_TIMEOUT,
        description="seconds a close call waits for a person (then it stays a challenger)",
    )

    def rule(self) -> gate.PromotionPolicy:
        """The promotion policy these parameters declare."""
        return gate.PromotionPolicy(self.policy, self.alpha, self.min_delta, self.min_accuracy)


class RunOptions(Group):
    """How the run treats what is already on disk, and what it publishes."""

    fresh: bool = Field(False, description="discard this run's checkpoints and train again")
    keep_checkpoints: Annotated[int, AfterValidator(check_keep)] = Field(
        5, description="keep the weights of the newest N epochs, 0 = all (metadata is kept)"
    )
    warm_start: bool = Field(
        False, description="fine-tune the champion's weights instead of training from scratch"
    )
    publish_report: bool = Field(True, description="publish the report and figures as artifacts")
    threads: Literal[1, 2] | None = Field(
        None, description="per-sample engine threads (empty: $MNISTNN_THREADS or measured)"
    )


class Parameters(BaseModel):
    """A run's parameters: one group per concern. `parse` builds it from flat names."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainingParameters(Parameters):
    """The `mnist-training` flow and `mnistnn train`."""

    data: DataParams = DataParams()
    network: NetworkParams = NetworkParams()
    inbox: InboxParams = InboxParams()
    promotion: PromotionParams = PromotionParams()
    run: RunOptions = RunOptions()


def check_threshold_0_1(value: float) -> float:
    """The review threshold is a confidence: a finite number in 0..1."""
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold must be a number in 0..1, got {value!r}")
    return value


def check_challenger(value: str | None) -> str | None:
    """A version such as v0002, "none" (no shadow model), or None (the newest that lost)."""
    if value is not None and value != "none" and not re.fullmatch(r"v\d{4,}", value):
        raise ConfigError(f"challenger must be a version such as v0002, or none; got {value!r}")
    return value


class ScoringOptions(Group):
    """How the unlabelled inbox is scored."""

    unlabelled: Annotated[str | None, Flag("--unlabelled")] = Field(
        None, description="the folder of digits to score (default: <data_dir>/unlabelled)"
    )
    threshold: Annotated[float, AfterValidator(check_threshold_0_1)] = Field(
        DEFAULT_THRESHOLD, description="digits below this confidence (0..1) go to the review queue"
    )
    challenger: Annotated[str | None, AfterValidator(check_challenger)] = Field(
        None,
        description="version that shadows the champion, or none (default: newest that lost)",
    )
    chunk_rows: Positive = Field(CHUNK_ROWS, description="rows per Parquet row group")
    publish_report: bool = Field(True, description="publish the scoring report as artifacts")


class ScoringParameters(Parameters):
    """The `mnist-batch-predict` flow and `mnistnn score`."""

    data: Location = Location()
    scoring: ScoringOptions = ScoringOptions()


class WatchParameters(Parameters):
    """The `mnist-watch` flow and `mnistnn watch`."""

    data: InboxLocation = InboxLocation()
    inbox: InboxChecks = InboxChecks()


G = TypeVar("G", bound=Parameters)


def fields(model: type[Parameters]) -> Iterator[tuple[str, str, FieldInfo]]:
    """(group, name, field) of every declared parameter, in declaration order."""
    for group, info in model.model_fields.items():
        assert isinstance(info.annotation, type) and issubclass(info.annotation, Group)
        for name, field in info.annotation.model_fields.items():
            yield group, name, field


def flag_of(field: FieldInfo, name: str) -> Flag:
    """The field's declared Flag, or `--name-with-dashes`."""
    declared = [item for item in field.metadata if isinstance(item, Flag)]
    return declared[0] if declared else Flag("--" + name.replace("_", "-"))


def help_text(name: str, field: FieldInfo) -> str:
    """The description with its default: for a network field the reference's value and each
    preset's (`hidden nodes (reference 88, best 800)`), else the declared default."""
    text = field.description or name
    if name in SETTINGS:
        values = [f"reference {_shown(resolve(None, {}).setting(name))}"]
        values += [
            f"{preset} {_shown(PRESETS[preset][name])}"
            for preset in PRESETS
            if name in PRESETS[preset] and preset != "reference"
        ]
        return f"{text} ({', '.join(values)})"
    if field.default is None:
        return text
    return f"{text} (default {_shown(field.default)})"


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse(model: type[G], values: Mapping[str, Any]) -> G:
    """The grouped parameters from flat names; ConfigError naming the first bad one.

    A value of None takes the declared default (for network fields: the preset's value).
    """
    groups: dict[str, dict[str, Any]] = {}
    known = {}
    for group, name, _ in fields(model):
        known[name] = group
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}")
    for name, value in values.items():
        if value is not None:
            groups.setdefault(known[name], {})[name] = value
    try:
        return model.model_validate(groups)
    except ValidationError as exc:
        raise ConfigError(one_line(exc)) from None


def flat(parameters: Parameters) -> dict[str, Any]:
    """Every parameter by its flat name, JSON-able (what a run records as its settings)."""
    dumped = parameters.model_dump(mode="json")
    return {name: dumped[group][name] for group, name, _ in fields(type(parameters))}


#: pydantic's constraint errors as the library words them ("epochs must be >= 1, got 0").
_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def one_line(exc: ValidationError, name: str | None = None) -> str:
    """The first error as `name must be ..., got value`, or the library check's own sentence."""
    error = exc.errors()[0]
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, ValueError):  # a library check (ConfigError) or a model validator
        return str(cause)
    names = [part for part in error["loc"] if isinstance(part, str)]
    name = names[-1] if names else name or "parameter"
    if error["type"] in _BOUNDS:
        key, sign = _BOUNDS[error["type"]]
        return f"{name} must be {sign} {context[key]}, got {error['input']!r}"
    if error["type"] == "literal_error":
        return f"{name} must be one of {context['expected']}; got {error['input']!r}"
    return f"{name}: {error['msg'][:1].lower()}{error['msg'][1:]}, got {error['input']!r}"
