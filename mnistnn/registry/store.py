"""Model registry: every completed run becomes a numbered version; one version is the champion.

Layout under the registry root (`DataPaths().models`: `data/models` or `s3://bucket/x/models`):

    registry.json           versions list, champion pointer, history of champion changes
    v0001/weights.npz       the weights (`checkpoint.save_weights` format, never pickle)
    v0001/meta.json         config, data hashes, metrics, created time, flow run id, decision
    .lock                   (local folders only) `fcntl.flock` target that serialises writers

`registry.json` is the commit point: a version's files are written first, then the registry,
so a crash leaves at worst an unregistered version, never a half-written registry. Every
write goes through the `Store` (whole or absent) and the commit is a compare-and-swap: the
registry is re-read with its version token and replaced only if unchanged (`If-Match` on S3,
`If-None-Match: *` for the first commit), recomputing the promotion decision on a conflict. A
version number is taken by a conditional *create* of its `weights.npz`, so two writers (on two
machines) never share one. In a local folder every writer also holds the flock, exactly as
before, so there the CAS never conflicts. Readers take no lock: they only ever see a whole old
or a whole new `registry.json`, and it names only versions whose files are complete.

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
import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mnistnn.config import SCHEMA_VERSION
from mnistnn.core.files import clean_temp_files, sha256_bytes
from mnistnn.core.locks import exclusive
from mnistnn.core.storage import Store, open_store
from mnistnn.errors import CheckpointError, NotFound, RegistryError
from mnistnn.model.checkpoint import weights_bytes, weights_from_bytes
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
_COMMIT_RETRIES = 64
_NO_MODEL = "no model trained yet: run `mnistnn train` first"


# -- the registry ---------------------------------------------------------------------------------
class ModelRegistry:
    """The versions under one root (a local folder or `s3://bucket/prefix`); safe to use from
    several processes, on several machines, at once."""

    def __init__(
        self, root: str | os.PathLike[str] | Store, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> None:
        self.store = root if isinstance(root, Store) else open_store(root)
        local = self.store.local_path(REGISTRY_FILE)
        #: A Path for a local registry (as given, relative or not), the URL on object storage.
        self.root: Path | str = (
            (Path(root) if not isinstance(root, Store) else local.parent)
            if local is not None
            else self.store.url
        )
        self.lock_timeout = float(lock_timeout)

    @property
    def is_local(self) -> bool:
        return isinstance(self.root, Path)

    @property
    def registry_path(self) -> Path:
        """The registry's commit point (local registries only)."""
        return self._local_root() / REGISTRY_FILE

    @property
    def lock_path(self) -> Path:
        """The file every writer locks (local registries only)."""
        return self._local_root() / LOCK_FILE

    def version_dir(self, version: str) -> Path:
        """Folder holding a version's weights and metadata (local registries only)."""
        return self._local_root() / version

    def where(self, key: str) -> str:
        """The path or URL of `key` for messages (the root as given, locally)."""
        if isinstance(self.root, Path):
            return str(self.root.joinpath(*key.split("/")))
        return self.store.join(key)

    def _local_root(self) -> Path:
        if not isinstance(self.root, Path):
            raise RegistryError(f"{self.root}: not a local registry (no file paths)")
        return self.root

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
            state, token = self._read_state_versioned()
            existing = self._find_meta(state, digest)
            if existing is not None:
                return self._recorded_decision(existing)
            champion = self._champion_score(state, test_sha256, rescore)  # before any write
            version = self._claim_version(state, data)
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
            }
            for attempt in range(_COMMIT_RETRIES):
                decision = decide(version, accuracy, champion, margin)
                self._write_meta(version, {**record, "decision": decision.to_dict()})
                new_state = RegistryState(
                    sorted([*state.versions, version], key=_number),
                    state.champion,
                    list(state.history),
                )
                if decision.promoted:
                    new_state.change_champion(version, "register", decision.reason)
                if self._commit(new_state, token):
                    break
                # another writer committed first (only on object storage): decide again
                # against the registry as it is now
                time.sleep(random.uniform(0, min(0.25, 0.005 * 2**attempt)))
                state, token = self._read_state_versioned()
                existing = self._find_meta(state, digest)
                if existing is not None:  # the same weights registered concurrently
                    return self._recorded_decision(existing)
                champion = self._champion_score(state, test_sha256, rescore)
            else:
                raise RegistryError(
                    f"{self.where(REGISTRY_FILE)}: gave up registering {version} after "
                    f"{_COMMIT_RETRIES} conflicting commits (too many concurrent writers)"
                )
        log.info("registered %s in %s: %s", version, self.root, decision.reason)
        return decision

    def promote(self, version: str) -> ModelVersion:
        """Make `version` the champion by hand (recorded in the history, undone by `rollback`)."""
        with self._locked():
            while True:
                state, token = self._read_state_versioned()
                self._require_known(state, version)
                if state.champion == version:
                    log.info("%s is already the champion; nothing to do", version)
                    break
                reason = f"manual promotion: {version} replaces champion {state.champion}"
                state.change_champion(version, "promote", reason)
                if self._commit(state, token):
                    log.info(reason)
                    break
            return self._model_version(version, state)

    def rollback(self) -> ModelVersion:
        """Undo the last champion change: the champion before it is champion again.

        Repeated rollbacks walk further back (the history is a stack of champion changes, and
        each rollback pops one); RegistryError when there is no earlier champion.
        """
        where = self.where(REGISTRY_FILE)
        with self._locked():
            while True:
                state, token = self._read_state_versioned()
                stack = champion_stack(state.history, where)
                if len(stack) < 2:
                    raise RegistryError(
                        f"{where}: no previous champion to roll back to "
                        f"(champion: {state.champion or 'none'})"
                    )
                target = stack[-2]
                reason = f"rollback: {target} replaces champion {state.champion}"
                state.change_champion(target, "rollback", reason)
                if self._commit(state, token):
                    break
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
        """Locally, hold the exclusive registry lock (RegistryError naming it on timeout).

        `flock` locks die with their process, so a crashed run never leaves a stale lock. On
        object storage there is no lock: the conditional commit serialises the writers.
        """
        if not isinstance(self.root, Path):
            yield
            return

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
        """The parsed registry.json; an empty registry when it does not exist yet."""
        return self._read_state_versioned()[0]

    def _read_state_versioned(self) -> tuple[RegistryState, str | None]:
        """The parsed registry.json and its version token (None: there is no registry yet)."""
        where = self.where(REGISTRY_FILE)
        found = self.store.read_versioned(REGISTRY_FILE)
        if found is None:
            return RegistryState([], None, []), None
        try:
            data = json.loads(found[0].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{where}: unreadable registry ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{where}: registry is not valid JSON ({exc})") from exc
        return parse_state(data, where), found[1]

    def _commit(self, state: RegistryState, token: str | None) -> bool:
        """Write registry.json if it is still the version `token` (None: still absent)."""
        data = _json_bytes(state.to_json())
        if token is None:
            return self.store.create(REGISTRY_FILE, data)
        return self.store.replace(REGISTRY_FILE, data, token)

    def _require_known(self, state: RegistryState, version: str) -> None:
        """RegistryError listing the known versions when `version` is not registered."""
        if version not in state.versions:
            known = ", ".join(state.versions) if state.versions else "none (registry is empty)"
            raise RegistryError(f"unknown version {version}; known: {known}")

    def _claim_version(self, state: RegistryState, data: bytes) -> str:
        """Take the next free version number by creating its weights (if absent), return it.

        One past every number used, registered or not, so an orphan version is never reused;
        the conditional create means two writers never take the same number.
        """
        names = list(state.versions)
        names += [key.partition("/")[0] for key in self.store.list("")]
        if isinstance(self.root, Path) and self.root.is_dir():  # empty orphan folders count too
            names += [path.name for path in self.root.iterdir() if path.is_dir()]
        number = max((_number(name) for name in names if VERSION_NAME.match(name)), default=0)
        while True:
            number += 1
            version = f"v{number:04d}"
            if self.store.create(f"{version}/{WEIGHTS_FILE}", data):
                return version

    # -- internals: versions -------------------------------------------------------------------
    def _write_meta(self, version: str, record: dict[str, Any]) -> None:
        """The metadata that vouches for a claimed version's weights (written after them)."""
        from mnistnn._version import __version__

        full = {
            **record,
            "weights_file": WEIGHTS_FILE,
            "mnistnn_version": __version__,
            "schema_version": SCHEMA_VERSION,
        }
        self.store.write_bytes(f"{version}/{META_FILE}", _json_bytes(full))

    def _read_meta(self, version: str) -> VersionMeta:
        """A registered version's validated meta.json; RegistryError naming the file if bad."""
        key = f"{version}/{META_FILE}"
        where = self.where(key)
        try:
            raw = self.store.read_bytes(key)
        except NotFound:
            raise RegistryError(
                f"{where}: metadata of registered version {version} is missing"
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{where}: unreadable version metadata ({exc})") from exc
        meta = parse_meta(data, where)
        if meta.version != version:
            raise RegistryError(f"{where}: names version {meta.version!r}, expected {version!r}")
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
        key = f"{meta.version}/{WEIGHTS_FILE}"
        where = self.where(key)
        try:
            data = self.store.read_bytes(key)
        except NotFound:
            raise RegistryError(f"model {meta.version}: {where}: weights file not found") from None
        try:
            network = weights_from_bytes(data, where, expected_sha256=meta.weights_sha256)
        except CheckpointError as exc:
            raise RegistryError(f"model {meta.version}: {exc}") from exc
        if network.config.to_dict() != meta.config:
            raise RegistryError(f"{where}: configuration differs from the one in {META_FILE}")
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
        key = f"{meta.version}/{META_FILE}"

        def add_score(current: bytes | None) -> bytes:
            if current is None:
                raise RegistryError(f"{self.where(key)}: metadata vanished while re-scoring")
            raw = json.loads(current.decode("utf-8"))
            raw["scores"] = {**raw.get("scores", {}), test_sha256: accuracy}
            return _json_bytes(raw)

        self.store.update(key, add_score)


def _number(version: str) -> int:
    """The number of a version name ("v0012" -> 12)."""
    return int(version[1:])


def _json_bytes(obj: Any) -> bytes:
    """Indented, key-sorted JSON, as every record of the project is written."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
