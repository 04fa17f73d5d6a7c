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
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mnistnn.config import SCHEMA_VERSION
from mnistnn.core.files import clean_temp_files, sha256_bytes, write_bytes_atomic, write_json_atomic
from mnistnn.core.locks import exclusive
from mnistnn.errors import CheckpointError, RegistryError
from mnistnn.model.checkpoint import load_weights, weights_bytes
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.promotion import ChampionScore, check_min_delta, decide
from mnistnn.registry.records import (
    VERSION_NAME,
    ModelVersion,
    PromotionDecision,
    RegistryState,
    VersionMeta,
    champion_stack,
    check_sha,
    checked_accuracy,
    checked_metrics,
    now_utc,
    parse_meta,
    parse_state,
)

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
LOCK_FILE = ".lock"
WEIGHTS_FILE = "weights.npz"
META_FILE = "meta.json"
DEFAULT_LOCK_TIMEOUT = 60.0

_LOCK_POLL = 0.01
_NO_MODEL = "no model trained yet: run `mnistnn train` first"


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
        clean_metrics = checked_metrics(metrics)
        accuracy = float(clean_metrics["accuracy"])
        check_sha("test_sha256", test_sha256)
        check_sha("train_sha256", train_sha256)
        margin = check_min_delta(min_delta)
        data = weights_bytes(network)
        digest = sha256_bytes(data)
        with self._locked():
            state = self._read_state()
            existing = self._find_meta(state, digest)
            if existing is not None:
                return self._recorded_decision(existing)
            champion = self._champion_score(state, test_sha256, rescore)
            version = self._next_version(state)
            decision = decide(version, accuracy, champion, margin)
            record = {
                "version": version,
                "created": now_utc(),
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
            stack = champion_stack(state.history, self.registry_path)
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

        def timed_out(timeout: float) -> RegistryError:
            return RegistryError(
                f"{self.lock_path}: timed out after {timeout:g}s waiting "
                "for the registry lock (another process is writing the registry; "
                "retry when it is done)"
            )

        with exclusive(
            self.lock_path, timeout=self.lock_timeout, on_timeout=timed_out, poll=_LOCK_POLL
        ):
            clean_temp_files(self.root)  # safe: every writer of the root holds this lock
            yield

    def _read_state(self) -> RegistryState:
        """The parsed registry.json; an empty registry when the file does not exist yet."""
        path = self.registry_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return RegistryState([], None, [])
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{path}: unreadable registry ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path}: registry is not valid JSON ({exc})") from exc
        return parse_state(data, path)

    def _write_state(self, state: RegistryState) -> None:
        """Commit the registry atomically (callers hold the lock)."""
        write_json_atomic(self.registry_path, state.to_json())

    def _require_known(self, state: RegistryState, version: str) -> None:
        """RegistryError listing the known versions when `version` is not registered."""
        if version not in state.versions:
            known = ", ".join(state.versions) if state.versions else "none (registry is empty)"
            raise RegistryError(f"unknown version {version}; known: {known}")

    def _next_version(self, state: RegistryState) -> str:
        """One past every number used, registered or not, so an orphan folder is never reused."""
        names = list(state.versions)
        if self.root.is_dir():
            names += [path.name for path in self.root.iterdir() if path.is_dir()]
        numbers_used = [int(m.group(1)) for m in map(VERSION_NAME.match, names) if m]
        return f"v{max(numbers_used, default=0) + 1:04d}"

    # -- internals: versions -------------------------------------------------------------------
    def _write_version(self, version: str, data: bytes, record: dict[str, Any]) -> None:
        """Weights first, then the metadata that vouches for them (both atomic)."""
        from mnistnn._version import __version__

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

    def _read_meta(self, version: str) -> VersionMeta:
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
        meta = parse_meta(data, path)
        if meta.version != version:
            raise RegistryError(f"{path}: names version {meta.version!r}, expected {version!r}")
        return meta

    def _model_version(self, version: str, state: RegistryState) -> ModelVersion:
        """Public view of one version."""
        meta = self._read_meta(version)
        return meta.to_model_version(is_champion=version == state.champion)

    def _find_meta(self, state: RegistryState, weights_sha256: str) -> VersionMeta | None:
        """Metadata of the registered version with these weights, if any."""
        for version in state.versions:
            meta = self._read_meta(version)
            if meta.weights_sha256 == weights_sha256:
                return meta
        return None

    def _recorded_decision(self, meta: VersionMeta) -> PromotionDecision:
        """The first registration's decision, returned again for an identical re-registration."""
        log.info(
            "weights %s… are already registered as %s; returning its recorded decision",
            meta.weights_sha256[:12],
            meta.version,
        )
        return meta.decision

    def _load_network(self, meta: VersionMeta) -> NeuralNetwork:
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
        state: RegistryState,
        test_sha256: str,
        rescore: Callable[[NeuralNetwork], float] | None,
    ) -> ChampionScore | None:
        """The champion's accuracy on this test data, re-scoring (and recording) it if needed."""
        if state.champion is None:
            return None
        meta = self._read_meta(state.champion)
        known = meta.scores.get(test_sha256)
        if known is not None:
            return ChampionScore(meta.version, known, rescored=False)
        if rescore is None:
            raise RegistryError(
                f"champion {meta.version} was scored on other test data (sha256 "
                f"{meta.test_sha256[:12]}…, now {test_sha256[:12]}…) and no rescore was given: "
                "pass rescore= so both are compared on the same data; nothing was registered"
            )
        value = rescore(self._load_network(meta))
        accuracy = checked_accuracy(value, f"rescore({meta.version})")
        self._record_score(meta, test_sha256, accuracy)
        log.info(
            "re-scored champion %s on test data %s…: %.4f", meta.version, test_sha256[:12], accuracy
        )
        return ChampionScore(meta.version, accuracy, rescored=True)

    def _record_score(self, meta: VersionMeta, test_sha256: str, accuracy: float) -> None:
        """Store a re-score in the version's meta.json so it is never computed twice."""
        raw = dict(meta.raw)
        raw["scores"] = {**meta.scores, test_sha256: accuracy}
        write_json_atomic(self.version_dir(meta.version) / META_FILE, raw)
