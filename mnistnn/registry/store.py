"""Model registry: every completed run becomes a numbered version; one version is the champion.

Layout under the registry root (`DataPaths().models`, i.e. `data/models`):

    registry.json           versions list, champion pointer, history of champion changes
    v0001/weights.npz       the weights (`checkpoint.save_weights` format, never pickle)
    v0001/meta.json         config, data hashes, metrics, created time, flow run id, decision
    .lock                   `fcntl.flock` target that serialises every writer

`registry.json` is the commit point: a version's files are written first, then the registry is
replaced atomically, so a crash leaves at worst an unregistered folder, never a half-written
registry. Every write happens under the lock, which also allocates version numbers, so two
runs finishing at once each get their own version. Readers take no lock: they only ever see a
whole old or a whole new `registry.json`, and it names only versions whose files are complete.

Promotion is fair: the newcomer is compared with the champion's accuracy *on the same test data*
(matched by sha256). When the test data changed since the champion was scored, the caller's
`rescore` callable scores the champion on the new data first, and that score is recorded in the
champion's `meta.json` (`scores`, accuracy by test-data sha256) so it is computed only once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import numbers
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeGuard

import numpy as np

from mnistnn.config import SCHEMA_VERSION
from mnistnn.core.files import clean_temp_files, sha256_bytes, write_bytes_atomic, write_json_atomic
from mnistnn.errors import CheckpointError, RegistryError
from mnistnn.model.checkpoint import load_checkpoint, load_weights, weights_bytes
from mnistnn.model.network import NeuralNetwork

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
LOCK_FILE = ".lock"
WEIGHTS_FILE = "weights.npz"
META_FILE = "meta.json"
DEFAULT_LOCK_TIMEOUT = 60.0

_VERSION = re.compile(r"^v(\d{4,})$")
_ACTIONS = ("register", "promote", "rollback")
_LOCK_POLL = 0.01
#: Absorbs float rounding in `champion + min_delta`, so "equal" really means equal.
_TOLERANCE = 1e-12
_NO_MODEL = "no model trained yet: run `mnistnn train` first"


# -- public records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromotionDecision:
    """Why a newly registered version did or did not become champion (JSON-able via `to_dict`).

    `champion_version` / `champion_accuracy` describe the champion it was compared with (None for
    the first model); `champion_rescored` says that accuracy was computed on the new test data.
    """

    promoted: bool
    version: str
    accuracy: float
    champion_version: str | None
    champion_accuracy: float | None
    min_delta: float
    reason: str
    champion_rescored: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str | Path = "decision") -> PromotionDecision:
        """Inverse of `to_dict`; RegistryError naming `source` when a field is wrong."""
        fields = _Fields(data, source)
        return cls(
            promoted=fields.boolean("promoted"),
            version=fields.version("version"),
            accuracy=fields.number("accuracy"),
            champion_version=fields.optional_string("champion_version"),
            champion_accuracy=fields.optional_number("champion_accuracy"),
            min_delta=fields.number("min_delta"),
            reason=fields.string("reason"),
            champion_rescored=fields.boolean("champion_rescored", default=False),
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


# -- the registry ---------------------------------------------------------------------------------
class ModelRegistry:
    """The versions under one root folder; safe to use from several processes at once."""

    def __init__(
        self, root: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> None:
        self.root = Path(root)
        self.lock_timeout = float(lock_timeout)

    @property
    def registry_path(self) -> Path:
        """The registry's commit point."""
        return self.root / REGISTRY_FILE

    @property
    def lock_path(self) -> Path:
        """The file every writer locks."""
        return self.root / LOCK_FILE

    def version_dir(self, version: str) -> Path:
        """Folder holding a version's weights and metadata."""
        return self.root / version

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------------
    def register(
        self,
        network: NeuralNetwork,
        *,
        metrics: Mapping[str, Any],
        test_sha256: str,
        train_sha256: str,
        run_dir: str | os.PathLike[str] | None = None,
        flow_run_id: str | None = None,
        min_delta: float = 0.0,
        rescore: Callable[[NeuralNetwork], float] | None = None,
    ) -> PromotionDecision:
        """Save `network` as a new version and decide, under one lock, whether it is champion.

        `metrics["accuracy"]` is its accuracy on the test data whose sha256 is `test_sha256`.
        Idempotent on the weights' sha256: registering the same weights again (a flow re-run)
        creates nothing and returns the decision recorded the first time. When a champion
        exists but was never scored on this test data, `rescore(champion_network)` must give
        its accuracy on it; without `rescore` a RegistryError is raised and nothing is written,
        because comparing accuracies on different test sets would be unfair.
        """
        clean_metrics = _checked_metrics(metrics)
        accuracy = float(clean_metrics["accuracy"])
        _check_sha("test_sha256", test_sha256)
        _check_sha("train_sha256", train_sha256)
        _check_min_delta(min_delta)
        data = weights_bytes(network)
        digest = sha256_bytes(data)
        with self._locked():
            state = self._read_state()
            existing = self._find_meta(state, digest)
            if existing is not None:
                return self._recorded_decision(existing)
            champion = self._champion_score(state, test_sha256, rescore)
            version = self._next_version(state)
            decision = _decide(version, accuracy, champion, float(min_delta))
            record = {
                "version": version,
                "created": _now(),
                "config": network.config.to_dict(),
                "metrics": clean_metrics,
                "test_sha256": test_sha256,
                "train_sha256": train_sha256,
                "run_dir": None if run_dir is None else os.fspath(run_dir),
                "flow_run_id": flow_run_id,
                "weights_sha256": digest,
                "scores": {test_sha256: accuracy},
                "decision": decision.to_dict(),
            }
            self._write_version(version, data, record)
            state.versions.append(version)
            if decision.promoted:
                state.change_champion(version, "register", decision.reason)
            self._write_state(state)
        log.info("registered %s in %s: %s", version, self.root, decision.reason)
        return decision

    def promote(self, version: str) -> ModelVersion:
        """Make `version` the champion by hand (recorded in the history, undone by `rollback`)."""
        with self._locked():
            state = self._read_state()
            self._require_known(state, version)
            if state.champion == version:
                log.info("%s is already the champion; nothing to do", version)
            else:
                reason = f"manual promotion: {version} replaces champion {state.champion}"
                state.change_champion(version, "promote", reason)
                self._write_state(state)
                log.info(reason)
            return self._model_version(version, state)

    def rollback(self) -> ModelVersion:
        """Undo the last champion change: the champion before it is champion again.

        Repeated rollbacks walk further back (the history is a stack of champion changes, and
        each rollback pops one); RegistryError when there is no earlier champion.
        """
        with self._locked():
            state = self._read_state()
            stack = _champion_stack(state.history, self.registry_path)
            if len(stack) < 2:
                raise RegistryError(
                    f"{self.registry_path}: no previous champion to roll back to "
                    f"(champion: {state.champion or 'none'})"
                )
            target = stack[-2]
            reason = f"rollback: {target} replaces champion {state.champion}"
            state.change_champion(target, "rollback", reason)
            self._write_state(state)
            log.info(reason)
            return self._model_version(target, state)

    # -- reading ---------------------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first (empty when there is no registry yet)."""
        state = self._read_state()
        return [self._model_version(version, state) for version in state.versions]

    def get(self, version: str) -> ModelVersion:
        """One version; RegistryError listing the known versions when it is not registered."""
        state = self._read_state()
        self._require_known(state, version)
        return self._model_version(version, state)

    def champion(self) -> ModelVersion | None:
        """The current champion, or None when nothing has been registered."""
        state = self._read_state()
        return None if state.champion is None else self._model_version(state.champion, state)

    def load(self, version: str | None = None) -> NeuralNetwork:
        """The network of `version` (None: the champion), its weights' sha256 verified."""
        state = self._read_state()
        if version is None:
            if state.champion is None:
                raise RegistryError(f"{_NO_MODEL} (the registry {self.root} is empty)")
            version = state.champion
        self._require_known(state, version)
        return self._load_network(self._read_meta(version))

    def find_by_weights(self, weights_sha256: str) -> ModelVersion | None:
        """The registered version whose weights have this sha256, if any."""
        state = self._read_state()
        record = self._find_meta(state, weights_sha256)
        return None if record is None else self._model_version(record.version, state)

    # -- internals: lock and registry.json ---------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive registry lock; RegistryError naming the lock file on timeout.

        `flock` locks die with their process, so a crashed run never leaves a stale lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as handle:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RegistryError(
                            f"{self.lock_path}: timed out after {self.lock_timeout:g}s waiting "
                            "for the registry lock (another process is writing the registry; "
                            "retry when it is done)"
                        ) from None
                    time.sleep(_LOCK_POLL)
            try:
                clean_temp_files(self.root)  # safe: every writer of the root holds this lock
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_state(self) -> _State:
        """The parsed registry.json; an empty registry when the file does not exist yet."""
        path = self.registry_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _State([], None, [])
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{path}: unreadable registry ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path}: registry is not valid JSON ({exc})") from exc
        return _parse_state(data, path)

    def _write_state(self, state: _State) -> None:
        """Commit the registry atomically (callers hold the lock)."""
        write_json_atomic(self.registry_path, state.to_json())

    def _require_known(self, state: _State, version: str) -> None:
        """RegistryError listing the known versions when `version` is not registered."""
        if version not in state.versions:
            known = ", ".join(state.versions) if state.versions else "none (registry is empty)"
            raise RegistryError(f"unknown version {version}; known: {known}")

    def _next_version(self, state: _State) -> str:
        """One past every number used, registered or not, so an orphan folder is never reused."""
        names = list(state.versions)
        if self.root.is_dir():
            names += [path.name for path in self.root.iterdir() if path.is_dir()]
        numbers_used = [int(m.group(1)) for m in map(_VERSION.match, names) if m]
        return f"v{max(numbers_used, default=0) + 1:04d}"

    # -- internals: versions -------------------------------------------------------------------
    def _write_version(self, version: str, data: bytes, record: dict[str, Any]) -> None:
        """Weights first, then the metadata that vouches for them (both atomic)."""
        from mnistnn import __version__

        folder = self.version_dir(version)
        folder.mkdir(parents=True, exist_ok=False)
        write_bytes_atomic(folder / WEIGHTS_FILE, data)
        full = {
            **record,
            "weights_file": WEIGHTS_FILE,
            "mnistnn_version": __version__,
            "schema_version": SCHEMA_VERSION,
        }
        write_json_atomic(folder / META_FILE, full)

    def _read_meta(self, version: str) -> _Meta:
        """A registered version's validated meta.json; RegistryError naming the file if bad."""
        path = self.version_dir(version) / META_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(
                f"{path}: metadata of registered version {version} is missing"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path}: unreadable version metadata ({exc})") from exc
        meta = _parse_meta(data, path)
        if meta.version != version:
            raise RegistryError(f"{path}: names version {meta.version!r}, expected {version!r}")
        return meta

    def _model_version(self, version: str, state: _State) -> ModelVersion:
        """Public view of one version."""
        meta = self._read_meta(version)
        return meta.to_model_version(is_champion=version == state.champion)

    def _find_meta(self, state: _State, weights_sha256: str) -> _Meta | None:
        """Metadata of the registered version with these weights, if any."""
        for version in state.versions:
            meta = self._read_meta(version)
            if meta.weights_sha256 == weights_sha256:
                return meta
        return None

    def _recorded_decision(self, meta: _Meta) -> PromotionDecision:
        """The first registration's decision, returned again for an identical re-registration."""
        log.info(
            "weights %s… are already registered as %s; returning its recorded decision",
            meta.weights_sha256[:12],
            meta.version,
        )
        return meta.decision

    def _load_network(self, meta: _Meta) -> NeuralNetwork:
        """Rebuild a version's network, refusing weights whose bytes do not match meta.json."""
        path = self.version_dir(meta.version) / WEIGHTS_FILE
        try:
            network = load_weights(path, expected_sha256=meta.weights_sha256)
        except CheckpointError as exc:
            raise RegistryError(f"model {meta.version}: {exc}") from exc
        if network.config.to_dict() != meta.config:
            raise RegistryError(f"{path}: configuration differs from the one in {META_FILE}")
        return network

    def _champion_score(
        self,
        state: _State,
        test_sha256: str,
        rescore: Callable[[NeuralNetwork], float] | None,
    ) -> _Score | None:
        """The champion's accuracy on this test data, re-scoring (and recording) it if needed."""
        if state.champion is None:
            return None
        meta = self._read_meta(state.champion)
        known = meta.scores.get(test_sha256)
        if known is not None:
            return _Score(meta.version, known, rescored=False)
        if rescore is None:
            raise RegistryError(
                f"champion {meta.version} was scored on other test data (sha256 "
                f"{meta.test_sha256[:12]}…, now {test_sha256[:12]}…) and no rescore was given: "
                "pass rescore= so both are compared on the same data; nothing was registered"
            )
        value = rescore(self._load_network(meta))
        accuracy = _checked_accuracy(value, f"rescore({meta.version})")
        self._record_score(meta, test_sha256, accuracy)
        log.info(
            "re-scored champion %s on test data %s…: %.4f", meta.version, test_sha256[:12], accuracy
        )
        return _Score(meta.version, accuracy, rescored=True)

    def _record_score(self, meta: _Meta, test_sha256: str, accuracy: float) -> None:
        """Store a re-score in the version's meta.json so it is never computed twice."""
        raw = dict(meta.raw)
        raw["scores"] = {**meta.scores, test_sha256: accuracy}
        write_json_atomic(self.version_dir(meta.version) / META_FILE, raw)


def resolve_model(
    spec: str | os.PathLike[str] | None, models_root: str | os.PathLike[str]
) -> NeuralNetwork:
    """The network a user means by `spec`, for CLI options such as `--model`.

    None: the registry's champion; `vNNNN`: that registered version; a path to a `.npz`: those
    weights; a path to a checkpoint `.json`: that checkpoint (its weights' sha256 verified).
    """
    if spec is None:
        return ModelRegistry(models_root).load()
    text = os.fspath(spec)
    if _VERSION.match(text):
        return ModelRegistry(models_root).load(text)
    path = Path(text)
    if path.is_file() and path.suffix == ".npz":
        return load_weights(path)
    if path.is_file() and path.suffix == ".json":
        return load_checkpoint(path)[0]
    problem = "no such file" if not path.exists() else "not a .npz or checkpoint .json file"
    raise RegistryError(
        f"cannot resolve model {text!r} ({problem}): give a registered version such as v0001, "
        "a weights .npz file or a checkpoint .json file"
    )


# -- promotion rule -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Score:
    """The champion's accuracy on the newcomer's test data."""

    version: str
    accuracy: float
    rescored: bool


def _decide(
    version: str, accuracy: float, champion: _Score | None, min_delta: float
) -> PromotionDecision:
    """Champion iff accuracy >= champion's (same test data) + min_delta, with a readable reason."""
    if champion is None:
        reason = f"first model: {version} (accuracy {accuracy:.4f}) becomes champion"
        return PromotionDecision(True, version, accuracy, None, None, min_delta, reason)
    needed = champion.accuracy + min_delta
    promoted = accuracy >= needed - _TOLERANCE
    note = ", re-scored on the new test data" if champion.rescored else ""
    bar = f"needed >= {needed:.4f}" + (f" (min_delta {min_delta:g})" if min_delta else "")
    head = f"{version} (accuracy {accuracy:.4f})"
    if promoted:
        extra = f", {bar}" if min_delta else ""
        reason = (
            f"{head} replaces champion {champion.version} ({champion.accuracy:.4f}{note}{extra})"
        )
    else:
        reason = (
            f"{head} stays a challenger: champion {champion.version} has "
            f"{champion.accuracy:.4f}{note}, {bar}"
        )
    return PromotionDecision(
        promoted,
        version,
        accuracy,
        champion.version,
        champion.accuracy,
        min_delta,
        reason,
        champion.rescored,
    )


# -- validation of inputs -------------------------------------------------------------------------
def _is_number(value: object) -> TypeGuard[numbers.Real]:
    """A finite real number (numpy scalars included, bools excluded)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


def _checked_accuracy(value: object, what: str) -> float:
    """`value` as a float in 0..1; ValueError naming `what` otherwise."""
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be an accuracy in 0..1, got {value!r}")
    return float(value)


def _json_default(value: object) -> Any:
    """Let numpy scalars and arrays in metrics through as plain JSON values."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _checked_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as plain JSON data with a valid accuracy (bad metrics are a caller bug)."""
    if "accuracy" not in metrics:
        raise ValueError("metrics must include 'accuracy'")
    _checked_accuracy(metrics["accuracy"], "metrics['accuracy']")
    try:
        text = json.dumps(dict(metrics), default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metrics must be JSON-able without NaN or infinity: {exc}") from exc
    plain: dict[str, Any] = json.loads(text)
    return plain


def _check_sha(name: str, value: object) -> None:
    """Data hashes are what makes comparisons fair, so they must be real strings."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty sha256 hex string, got {value!r}")


def _check_min_delta(value: object) -> None:
    """A negative margin would let worse models win; NaN would make every comparison False."""
    if not _is_number(value) or float(value) < 0:
        raise ValueError(f"min_delta must be a finite number >= 0, got {value!r}")


def _now() -> str:
    """Current time, ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- parsing of stored files ----------------------------------------------------------------------
class _Fields:
    """Typed access to one JSON object; every failure is a RegistryError naming its source."""

    def __init__(self, data: object, source: str | Path, what: str = "a JSON object") -> None:
        if not isinstance(data, dict):
            raise RegistryError(f"{source}: expected {what}, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.source = source

    def fail(self, key: str, expected: str) -> NoReturn:
        """Raise the error for a missing or wrongly typed field."""
        if key not in self.data:
            raise RegistryError(f"{self.source}: field {key!r} is missing")
        shown = repr(self.data[key])
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise RegistryError(f"{self.source}: field {key!r} must be {expected}, got {shown}")

    def string(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            self.fail(key, "a string")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(key, "a string or null")
        return value

    def version(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not _VERSION.match(value):
            self.fail(key, "a version such as v0001")
        return value

    def number(self, key: str) -> float:
        value = self.data.get(key)
        if not _is_number(value):
            self.fail(key, "a finite number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.data.get(key) is None else self.number(key)

    def boolean(self, key: str, default: bool | None = None) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "true or false")
        return value

    def obj(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            self.fail(key, "an object")
        return value

    def array(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            self.fail(key, "a list")
        return value


@dataclass
class _State:
    """The content of registry.json."""

    versions: list[str]
    champion: str | None
    history: list[dict[str, Any]]

    def change_champion(self, version: str, action: str, reason: str) -> None:
        """Point at a new champion and record why in the history."""
        entry = {
            "at": _now(),
            "action": action,
            "champion": version,
            "previous": self.champion,
            "reason": reason,
        }
        self.history.append(entry)
        self.champion = version

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "versions": self.versions,
            "champion": self.champion,
            "history": self.history,
        }


def _parse_state(data: object, path: Path) -> _State:
    """Validate registry.json's structure and its internal consistency."""
    fields = _Fields(data, path, "a JSON object with versions, champion and history")
    versions = fields.array("versions")
    for index, item in enumerate(versions):
        if not isinstance(item, str) or not _VERSION.match(item):
            raise RegistryError(f"{path}: versions[{index}] is not a version name: {item!r}")
    if len(set(versions)) != len(versions):
        raise RegistryError(f"{path}: versions lists a version twice")
    champion = fields.optional_string("champion")
    if champion is not None and champion not in versions:
        raise RegistryError(f"{path}: champion {champion!r} is not in versions")
    history = fields.array("history")
    for index, entry in enumerate(history):
        item = _Fields(entry, f"{path}: history[{index}]")
        if item.string("action") not in _ACTIONS:
            item.fail("action", f"one of {', '.join(_ACTIONS)}")
        if item.string("champion") not in versions:
            item.fail("champion", "a registered version")
        item.optional_string("previous")
    stack = _champion_stack(history, path)
    if (stack[-1] if stack else None) != champion:
        raise RegistryError(f"{path}: champion {champion!r} does not match its history")
    return _State(list(versions), champion, list(history))


def _champion_stack(history: list[dict[str, Any]], path: Path) -> list[str]:
    """Replay the history: register/promote push a champion, rollback pops back to the last."""
    stack: list[str] = []
    for index, entry in enumerate(history):
        if entry["action"] != "rollback":
            stack.append(entry["champion"])
            continue
        if len(stack) < 2 or stack[-2] != entry["champion"]:
            raise RegistryError(f"{path}: history[{index}] rolls back to a champion it never had")
        stack.pop()
    return stack


@dataclass(frozen=True)
class _Meta:
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
            confident=float(confident) if _is_number(confident) else None,
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


def _parse_meta(data: object, path: Path) -> _Meta:
    """Validate one meta.json; RegistryError naming the file and the wrong field."""
    fields = _Fields(data, path, "a JSON object of version metadata")
    for key in ("created", "train_sha256"):
        fields.string(key)
    for key in ("run_dir", "flow_run_id"):
        fields.optional_string(key)
    _Fields(fields.obj("metrics"), f"{path}: metrics").number("accuracy")
    score_fields = _Fields(fields.obj("scores"), f"{path}: scores")
    scores = {key: score_fields.number(key) for key in score_fields.data}
    return _Meta(
        raw=fields.data,
        version=fields.version("version"),
        weights_sha256=fields.string("weights_sha256"),
        test_sha256=fields.string("test_sha256"),
        config=fields.obj("config"),
        scores=scores,
        decision=PromotionDecision.from_dict(fields.obj("decision"), f"{path}: decision"),
    )
