"""The registry's files: the lock, registry.json's compare-and-swap, version numbers and meta.json.

`RegistryFiles` is the base of `ModelRegistry` (mnistnn.registry.store): everything that touches
bytes, so the registry's rules read apart from its storage. Every change of registry.json goes
through `transact`, which is `Store.update` (the project's one bounded, jittered CAS loop).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mnistnn.config import SCHEMA_VERSION
from mnistnn.core.files import clean_temp_files
from mnistnn.core.locks import exclusive
from mnistnn.core.storage import Store, open_store
from mnistnn.errors import CheckpointError, NotFound, RegistryError
from mnistnn.model.checkpoint import weights_from_bytes
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.log import (
    RegistryState,
    json_bytes,
    parse_state,
    state_bytes,
)
from mnistnn.registry.records import ModelVersion, VersionMeta, parse_meta
from mnistnn.registry.weights_index import WEIGHTS_KEY, add_to_index, indexed_versions

REGISTRY_FILE = "registry.json"
LOCK_FILE = ".lock"
WEIGHTS_FILE = "weights.npz"
META_FILE = "meta.json"
DEFAULT_LOCK_TIMEOUT = 60.0
_LOCK_POLL = 0.01


class Unchanged(Exception):
    """Raised by a `transact` change that has nothing to write (caught there)."""


class RegistryFiles:
    """Storage of one registry root (a local folder or `s3://bucket/prefix`)."""

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

    # -- lock and registry.json ------------------------------------------------------------------
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

    def transact(self, change: Callable[[RegistryState], None]) -> RegistryState:
        """Apply `change` to registry.json by compare-and-swap (Store.update) and return the
        state committed. `change` may run once per conflict, each time on a fresh state; it
        raises `Unchanged` when there is nothing to write (then the state read is returned).
        Its writes besides registry.json (the new version's meta.json, a history segment) are
        idempotent, so the attempt that commits leaves them as it needs them. The caller holds
        `_locked()` (locally it keeps temp-file cleaning away from other writers).
        """
        committed: list[RegistryState] = []

        def step(current: bytes | None) -> bytes:
            state = self._parse_state(current)
            committed[:] = [state]
            try:
                change(state)
            except Unchanged:
                return current if current is not None else state_bytes(state)
            state.compact(self.store)
            return state_bytes(state)

        self.store.update(REGISTRY_FILE, step)
        return committed[0]

    def _read_state(self) -> RegistryState:
        """The parsed registry.json; an empty registry when it does not exist yet."""
        found = self.store.read_versioned(REGISTRY_FILE)
        return self._parse_state(None if found is None else found[0])

    def _parse_state(self, raw: bytes | None) -> RegistryState:
        where = self.where(REGISTRY_FILE)
        if raw is None:
            return RegistryState([], None, [])
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{where}: unreadable registry ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{where}: registry is not valid JSON ({exc})") from exc
        return parse_state(data, where)

    def _require_known(self, state: RegistryState, version: str) -> None:
        """RegistryError listing the known versions when `version` is not registered."""
        if version not in state.versions:
            known = ", ".join(state.versions) if state.versions else "none (registry is empty)"
            raise RegistryError(f"unknown version {version}; known: {known}")

    def _claim_version(self, state: RegistryState, data: bytes) -> str:
        """Take the next free version number by creating its weights (if absent), return it.

        One past the newest registered version and every orphan number right above it (a
        version claimed but never committed: its weights exist, or locally even an empty
        folder), so an orphan version is never reused; the conditional create means two
        writers never take the same number. No listing: the cost stays the same however many
        versions the registry holds.
        """
        number = max((number_of(name) for name in state.versions), default=0)
        local = self.root if isinstance(self.root, Path) else None
        while True:
            number += 1
            version = f"v{number:04d}"
            if local is not None and (local / version).exists():  # an orphan folder, even empty
                continue
            if self.store.create(f"{version}/{WEIGHTS_FILE}", data):
                return version

    # -- versions ----------------------------------------------------------------------------
    def _write_meta(self, version: str, record: dict[str, Any]) -> None:
        """The metadata that vouches for a claimed version's weights (written after them)."""
        from mnistnn._version import __version__

        full = {
            **record,
            "weights_file": WEIGHTS_FILE,
            "mnistnn_version": __version__,
            "schema_version": SCHEMA_VERSION,
        }
        self.store.write_bytes(f"{version}/{META_FILE}", json_bytes(full))

    def update_meta(self, version: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change a version's meta.json in place by compare-and-swap."""
        key = f"{version}/{META_FILE}"

        def step(current: bytes | None) -> bytes:
            if current is None:
                raise RegistryError(f"{self.where(key)}: metadata of {version} is missing")
            raw = json.loads(current.decode("utf-8"))
            change(raw)
            return json_bytes(raw)

        self.store.update(key, step)

    def read_meta(self, version: str) -> VersionMeta:
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
        return self._view(self.read_meta(version), state)

    def _view(self, meta: VersionMeta, state: RegistryState) -> ModelVersion:
        """A version's public view from its meta.json, already read."""
        return meta.to_model_version(is_champion=meta.version == state.champion)

    def _find_meta(self, state: RegistryState, weights_sha256: str) -> VersionMeta | None:
        """Metadata of the registered version with these weights, if any: one shard of the
        weights index (`weights_index`) and the meta.json of its match; a registry from before
        the sharded index (`state.indexed` false) also through its older index in
        registry.json, then every version that index does not cover."""
        for version in indexed_versions(self.store, weights_sha256):
            if version in state.versions:
                meta = self.read_meta(version)
                if meta.weights_sha256 == weights_sha256:
                    return meta
        if state.indexed:
            return None
        indexed = state.weights.get(weights_sha256[:WEIGHTS_KEY])
        if indexed is not None and indexed in state.versions:
            meta = self.read_meta(indexed)
            if meta.weights_sha256 == weights_sha256:
                return meta
        covered = set(state.weights.values())
        for version in state.versions:
            if version not in covered:
                meta = self.read_meta(version)
                if meta.weights_sha256 == weights_sha256:
                    return meta
        return None

    def _index_weights(self, state: RegistryState, version: str, weights_sha256: str) -> None:
        """Put `version` in the weights index before the commit that registers it; the first
        time, every version registered before the sharded index too (from the older index in
        registry.json, else its meta.json), and `state` is marked as fully indexed."""
        entries: dict[str, list[str]] = {weights_sha256: [version]}
        if not state.indexed:
            by_version = {older: sha for sha, older in state.weights.items()}
            for older in state.versions:
                sha = by_version.get(older) or self.read_meta(older).weights_sha256
                entries.setdefault(sha[:WEIGHTS_KEY], []).append(older)
        add_to_index(self.store, entries)
        state.indexed, state.weights = True, {}

    def load_network(self, meta: VersionMeta) -> NeuralNetwork:
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


def number_of(version: str) -> int:
    """The number of a version name ("v0012" -> 12)."""
    return int(version[1:])
