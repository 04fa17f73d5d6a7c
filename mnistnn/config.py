"""Configuration in one place: where data lives, and the frozen network configuration.

`NetworkConfig` defaults are the reference ("Make Your Own Neural Network", 88 hidden nodes,
learning rate 0.05, legacy initialisation, per-sample SGD in float64). It round-trips through JSON
exactly, so a checkpoint that embeds it is enough to rebuild the model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mnistnn.errors import ConfigError

if TYPE_CHECKING:
    from mnistnn.core.storage import Store

INPUT_NODES = 784
IMAGE_SIDE = 28
N_CLASSES = 10
INITS = ("legacy", "default")
DTYPES = ("float64", "float32")
OUTPUTS = ("sigmoid", "softmax")
SCHEDULES = ("constant", "step", "cosine")
AUGMENTS = ("none", "affine", "elastic")

T = TypeVar("T")

#: Bump when the layout of checkpoints, run folders or Parquet files changes incompatibly.
SCHEMA_VERSION = 1

#: The project's data folder, relative to the working directory unless MNISTNN_DATA_DIR is set.
DEFAULT_DATA_DIR = Path(os.environ.get("MNISTNN_DATA_DIR", "data"))


@dataclass(frozen=True)
class DataPaths:
    """Every folder under the data directory (cookiecutter-data-science layout).

    `root` is a local folder or an `s3://bucket/prefix` URL; `DataPaths.at` takes either. Every
    location below is one type, a string (a local path or a URL), read and written through
    `mnistnn.core.locations`, so no caller branches on what it got.
    """

    root: Path | str = DEFAULT_DATA_DIR

    def __post_init__(self) -> None:
        from mnistnn.core.locations import as_location

        object.__setattr__(self, "root", as_location(self.root))

    @classmethod
    def at(cls, location: str | os.PathLike[str]) -> DataPaths:
        """The layout under a local path or an `s3://bucket/prefix` URL."""
        return cls(location if isinstance(location, str) else Path(location))

    @property
    def is_remote(self) -> bool:
        return isinstance(self.root, str)

    @property
    def store(self) -> Store:
        """The Store of the whole data directory (keys such as "runs/<key>/run.json")."""
        from mnistnn.core.locations import store_at

        return store_at(self.root)

    def _at(self, *parts: str) -> str:
        from mnistnn.core.locations import join

        return str(join(self.root, *parts))

    @property
    def raw(self) -> str:
        """Committed, immutable inputs."""
        return self._at("raw")

    @property
    def processed(self) -> str:
        """Validated Parquet files, one per distinct source content."""
        return self._at("processed")

    @property
    def runs(self) -> str:
        """One folder per (configuration, train data, test data)."""
        return self._at("runs")

    @property
    def models(self) -> str:
        """The model registry."""
        return self._at("models")

    @property
    def incoming(self) -> str:
        """The labelled inbox: MNIST CSV batches that other processes drop (never modified)."""
        return self._at("incoming")

    @property
    def snapshots(self) -> str:
        """Content-addressed training-data manifests and the inbox ledger."""
        return self._at("snapshots")

    @property
    def unlabelled(self) -> str:
        """The scoring inbox: unlabelled digits (CSV, Parquet, folders of images)."""
        return self._at("unlabelled")

    @property
    def predictions(self) -> str:
        """One Parquet of predictions per (input content, model version)."""
        return self._at("predictions")

    @property
    def review(self) -> str:
        """Doubtful digits waiting for a person's label, one CSV per input."""
        return self._at("review")

    @property
    def train_csv(self) -> str:
        return self._at("raw", "mnist_train.csv.gz")

    @property
    def test_csv(self) -> str:
        return self._at("raw", "mnist_test.csv.gz")


@dataclass(frozen=True)
class NetworkConfig:
    """Hyperparameters of the three-layer network; learned weights live in `NeuralNetwork`.

    `batch_size == 1` is the reference per-sample SGD; larger batches sum the per-sample updates
    of a batch computed at the same weights (mini-batch SGD, a different algorithm).

    Beyond the book (all off by default, see `mnistnn.model.optim`): a softmax output with
    cross-entropy loss, biases, momentum, a learning-rate schedule over `schedule_epochs`,
    shuffling and augmentation regenerated each epoch (deterministic per seed and epoch).
    Any of softmax, biases or momentum switches to the modern mini-batch path, which averages
    the gradient over each batch.
    """

    input_nodes: int = INPUT_NODES
    hidden_nodes: int = 88
    output_nodes: int = N_CLASSES
    learning_rate: float = 0.05
    seed: int = 0
    init: str = "legacy"
    dtype: str = "float64"
    batch_size: int = 1
    output: str = "sigmoid"
    biases: bool = False
    momentum: float = 0.0
    schedule: str = "constant"
    schedule_epochs: int = 15
    shuffle: bool = False
    augment: str = "none"

    def __post_init__(self) -> None:
        for name in ("input_nodes", "hidden_nodes", "output_nodes", "batch_size"):
            _check_positive_int(name, getattr(self, name))
        _check_int("seed", self.seed)
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be in 0..2**32-1, got {self.seed!r}")
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, int | float)
            or not math.isfinite(lr)
            or lr <= 0
        ):
            raise ConfigError(f"learning_rate must be a finite number > 0, got {lr!r}")
        object.__setattr__(self, "learning_rate", float(lr))
        for name, allowed in (
            ("init", INITS),
            ("dtype", DTYPES),
            ("output", OUTPUTS),
            ("schedule", SCHEDULES),
            ("augment", AUGMENTS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}"
                )
        _check_positive_int("schedule_epochs", self.schedule_epochs)
        for name in ("biases", "shuffle"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        momentum = self.momentum
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, int | float)
            or not 0 <= momentum < 1
        ):
            raise ConfigError(f"momentum must be a number in [0, 1), got {momentum!r}")
        object.__setattr__(self, "momentum", float(momentum))

    @property
    def uses_reference_update(self) -> bool:
        """True when training follows the book's update rule (sigmoid, no biases, no momentum)."""
        return self.output == "sigmoid" and not self.biases and self.momentum == 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing keys take the defaults."""
        return from_fields(cls, data, "configuration field")


def from_fields(cls: type[T], data: dict[str, Any], what: str) -> T:
    """A dataclass from a dict of its fields; unknown keys raise ConfigError naming them."""
    known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what}(s): {', '.join(unknown)}")
    return cls(**data)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")


def _check_positive_int(name: str, value: object) -> None:
    _check_int(name, value)
    assert isinstance(value, int)
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value!r}")
