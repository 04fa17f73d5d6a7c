"""The registry's records: a version's meta.json and the decision in it, written and read back.

`PromotionDecision` and `ModelVersion` are the public views; `VersionMeta` (one meta.json;
registry.json is mnistnn.registry.log's) is validated as they are parsed, with the project's one
record validator, so a corrupt or hand-edited file is a RegistryError naming the file and field.
The checks on values going into a new record (metrics, data hashes) live here too.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistnn.core.records import Fields, is_number
from mnistnn.errors import RegistryError

#: A version's name: "v" and at least four digits (v0001, v0002, ..., v10000).
VERSION_NAME = re.compile(r"^v(\d{4,})\Z")  # \Z: "v0001\n" is no name


def now_utc() -> str:
    """Current time, ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_field(fields: Fields, key: str) -> str:
    """A field holding a version name; RegistryError naming the source otherwise."""
    value = fields.data.get(key)
    if not isinstance(value, str) or not VERSION_NAME.match(value):
        fields.fail(key, "a version such as v0001")
    return value


# -- public records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromotionDecision:
    """Why a newly registered version did or did not become champion (JSON-able via `to_dict`).

    `champion_version` / `champion_accuracy` describe the champion it was compared with (None for
    the first model); `champion_rescored` says that accuracy was computed on the new test data.
    `policy`, `evidence` (and `recent_evidence`, `mnistnn.registry.evidence.Evidence` as dicts),
    `guardrail` (the one that refused it), `close_call` and `approval` (who answered a close call,
    when, and how) are the promotion gate's record; older records read back with their defaults.
    """

    promoted: bool
    version: str
    accuracy: float
    champion_version: str | None
    champion_accuracy: float | None
    min_delta: float
    reason: str
    champion_rescored: bool = False
    policy: str = "better"
    guardrail: str | None = None
    close_call: bool = False
    evidence: dict[str, Any] | None = None
    recent_evidence: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str | Path = "decision") -> PromotionDecision:
        """Inverse of `to_dict`; RegistryError naming `source` when a field is wrong."""
        fields = Fields(data, source, error=RegistryError)

        def optional_obj(key: str) -> dict[str, Any] | None:
            return None if fields.data.get(key) is None else fields.obj(key)

        return cls(
            promoted=fields.boolean("promoted"),
            version=version_field(fields, "version"),
            accuracy=fields.number("accuracy"),
            champion_version=fields.optional_string("champion_version"),
            champion_accuracy=fields.optional_number("champion_accuracy"),
            min_delta=fields.number("min_delta"),
            reason=fields.string("reason"),
            champion_rescored=fields.boolean("champion_rescored", default=False),
            policy=fields.data.get("policy") or "better",
            guardrail=fields.optional_string("guardrail"),
            close_call=fields.boolean("close_call", default=False),
            evidence=optional_obj("evidence"),
            recent_evidence=optional_obj("recent_evidence"),
            approval=optional_obj("approval"),
        )


@dataclass(frozen=True)
class ModelVersion:
    """One registered model as read from its `meta.json` (weights stay on disk until `load`).

    `accuracy` is on the version's own test data (`test_sha256`); `scores` holds its accuracy on
    every test data it was scored on, including re-scores made when it was the champion.
    """

    version: str
    created: str
    accuracy: float
    confident: float | None
    test_sha256: str
    train_sha256: str
    config: dict[str, Any]
    run_dir: str | None
    flow_run_id: str | None
    weights_sha256: str
    is_champion: bool
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    scores: dict[str, float] = field(default_factory=dict, repr=False)
    decision: PromotionDecision | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (the decision nested as a dict)."""
        return dataclasses.asdict(self)


# -- values going into a new record ---------------------------------------------------------------
def checked_accuracy(value: object, what: str) -> float:
    """`value` as a float in 0..1; ValueError naming `what` otherwise."""
    if not is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be an accuracy in 0..1, got {value!r}")
    return float(value)


def _json_default(value: object) -> Any:
    """Let numpy scalars and arrays in metrics through as plain JSON values."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def checked_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as plain JSON data with a valid accuracy (bad metrics are a caller bug)."""
    if "accuracy" not in metrics:
        raise ValueError("metrics must include 'accuracy'")
    checked_accuracy(metrics["accuracy"], "metrics['accuracy']")
    try:
        text = json.dumps(dict(metrics), default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metrics must be JSON-able without NaN or infinity: {exc}") from exc
    plain: dict[str, Any] = json.loads(text)
    return plain


def check_sha(name: str, value: object) -> None:
    """Data hashes are what makes comparisons fair, so they must be real strings."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty sha256 hex string, got {value!r}")


# -- meta.json ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionMeta:
    """A validated meta.json (`raw` kept so re-scores can be added without losing fields)."""

    raw: dict[str, Any]
    version: str
    weights_sha256: str
    test_sha256: str
    config: dict[str, Any]
    scores: dict[str, float]
    decision: PromotionDecision

    def to_model_version(self, is_champion: bool) -> ModelVersion:
        metrics: dict[str, Any] = self.raw["metrics"]
        confident = metrics.get("confident")
        return ModelVersion(
            version=self.version,
            created=self.raw["created"],
            accuracy=float(metrics["accuracy"]),
            confident=float(confident) if is_number(confident) else None,
            test_sha256=self.test_sha256,
            train_sha256=self.raw["train_sha256"],
            config=self.config,
            run_dir=self.raw["run_dir"],
            flow_run_id=self.raw["flow_run_id"],
            weights_sha256=self.weights_sha256,
            is_champion=is_champion,
            metrics=metrics,
            scores=self.scores,
            decision=self.decision,
        )


def parse_meta(data: object, path: Path | str) -> VersionMeta:
    """Validate one meta.json; RegistryError naming the file and the wrong field."""
    fields = Fields(data, path, error=RegistryError, what="a JSON object of version metadata")
    for key in ("created", "train_sha256"):
        fields.string(key)
    for key in ("run_dir", "flow_run_id"):
        fields.optional_string(key)
    Fields(fields.obj("metrics"), f"{path}: metrics", error=RegistryError).number("accuracy")
    score_fields = Fields(fields.obj("scores"), f"{path}: scores", error=RegistryError)
    scores = {key: score_fields.number(key) for key in score_fields.data}
    return VersionMeta(
        raw=fields.data,
        version=version_field(fields, "version"),
        weights_sha256=fields.string("weights_sha256"),
        test_sha256=fields.string("test_sha256"),
        config=fields.obj("config"),
        scores=scores,
        decision=PromotionDecision.from_dict(fields.obj("decision"), f"{path}: decision"),
    )
