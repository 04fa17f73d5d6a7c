"""Run folders: one per (configuration, train data, test data), found again by the same inputs.

    data/runs/<run-key>/
        run.json                 what the run is: config, data hashes (written once)
        checkpoints/epoch-0003.npz + .json
        evals/epoch-0003.json    test-set scores of checkpoint 3
        metrics.json             per-epoch list, rebuilt from the checkpoints and evals
        weights.npz              the final weights (a copy of the last checkpoint's)
        figures/*.png  report.md
The number of epochs is not part of the key: asking for more epochs later continues the run.

A run folder is a *location* (`mnistnn.core.locations`): a local Path, or an `s3://` prefix
whose objects are written through the Store. The run lock is an flock on `.lock` locally and a
lease object `.lease` (conditional create, renewed while held, taken over after its expiry by
another machine, which logs it) on object storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistnn.config import SCHEMA_VERSION, NetworkConfig
from mnistnn.core import locations
from mnistnn.core.locations import Location
from mnistnn.core.locks import exclusive
from mnistnn.errors import ConfigError, MnistnnError, StorageError, StorageUnavailable

#: How long a run's lease on object storage outlives its last renewal (renewed every ttl/3).
#: The environment variable MNISTNN_LEASE_TTL (seconds) overrides it on a worker: shorter for a
#: faster take-over after a crash, longer when renewals may stall (a slow or distant store).
LEASE_TTL = 30.0
LEASE_TTL_VARIABLE = "MNISTNN_LEASE_TTL"


def run_key(
    config: NetworkConfig,
    train_sha256: str,
    test_sha256: str,
    warm_start: dict[str, Any] | None = None,
) -> str:
    """Short stable hash of the canonical JSON of everything that determines the run's results.

    `train_sha256` is the snapshot's identity (the base file's sha256 when the inbox added
    nothing). `warm_start` (the champion's version and weights sha256) is part of the key only
    when given, so a run from scratch keeps the key it always had and a warm run never shares
    its folder.
    """
    identity: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "train_sha256": train_sha256,
        "test_sha256": test_sha256,
    }
    if warm_start is not None:
        identity["warm_start"] = warm_start
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class RunFolder:
    """Locations inside one run folder (Paths locally, URLs on object storage)."""

    path: Location

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", locations.as_location(self.path))

    @property
    def name(self) -> str:
        return locations.name(self.path)

    @property
    def checkpoints(self) -> Location:
        return locations.join(self.path, "checkpoints")

    @property
    def evals(self) -> Location:
        return locations.join(self.path, "evals")

    @property
    def figures(self) -> Location:
        return locations.join(self.path, "figures")

    @property
    def run_json(self) -> Location:
        return locations.join(self.path, "run.json")

    @property
    def metrics_json(self) -> Location:
        return locations.join(self.path, "metrics.json")

    @property
    def weights(self) -> Location:
        return locations.join(self.path, "weights.npz")

    @property
    def report(self) -> Location:
        return locations.join(self.path, "report.md")

    @property
    def initial(self) -> Location:
        """The weights epoch 1 starts from in a warm-started run (a copy of the champion's)."""
        return locations.join(self.path, "initial.npz")

    def eval_path(self, epoch: int) -> Location:
        return locations.join(self.evals, f"epoch-{epoch:04d}.json")


def run_folder(
    runs_root: str | os.PathLike[str],
    config: NetworkConfig,
    train_sha256: str,
    test_sha256: str,
    warm_start: dict[str, Any] | None = None,
) -> RunFolder:
    """The folder of the run of these inputs (nothing is created)."""
    return RunFolder(
        locations.join(runs_root, run_key(config, train_sha256, test_sha256, warm_start))
    )


def open_run(
    folder: RunFolder,
    config: NetworkConfig,
    train_sha256: str,
    test_sha256: str,
    *,
    fresh: bool = False,
    extra: dict[str, Any] | None = None,
) -> RunFolder:
    """Create (or find) the run folder; `fresh` deletes what it held first. Call under the lock.

    `extra` (the warm start, the snapshot's members) is recorded in `run.json` beside the key's
    inputs.
    """
    if isinstance(folder.path, Path):
        if fresh and folder.path.exists():
            for child in folder.path.iterdir():
                if child.name != ".lock":
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        for sub in (folder.checkpoints, folder.evals, folder.figures):
            Path(sub).mkdir(parents=True, exist_ok=True)
    elif fresh:
        store = locations.store_at(folder.path)
        for key in store.list(""):
            if key != ".lease":
                store.delete(key)
    if not locations.exists(folder.run_json):
        locations.write_json(
            folder.run_json,
            {
                "schema_version": SCHEMA_VERSION,
                "config": config.to_dict(),
                "train_sha256": train_sha256,
                "test_sha256": test_sha256,
                **(extra or {}),
            },
        )
    return folder


def lease_owner() -> str:
    """`host:pid:flow-run-id` of this process, for lease records and messages."""
    flow_run = os.environ.get("PREFECT__FLOW_RUN_ID", "-")
    return f"{socket.gethostname()}:{os.getpid()}:{flow_run}"


def lease_ttl() -> float:
    """The run lease's ttl: MNISTNN_LEASE_TTL when set, else LEASE_TTL; ConfigError if invalid."""
    raw = os.environ.get(LEASE_TTL_VARIABLE, "").strip()
    if not raw:
        return LEASE_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = math.nan
    if not (math.isfinite(ttl) and ttl > 0):
        raise ConfigError(
            f"{LEASE_TTL_VARIABLE}: expected a positive number of seconds, not {raw!r}"
        )
    return ttl


@contextlib.contextmanager
def run_lock(folder: RunFolder, timeout: float = 3600.0) -> Iterator[None]:
    """Hold the run folder's exclusive lock: a second run of the same inputs waits here.

    Locally an flock, which the OS drops when the holder dies (even by SIGKILL). On object
    storage a lease renewed every ttl/3 s: a killed worker's lease is taken over (and the
    take-over logged) ttl s after its last renewal (`lease_ttl()`, 30 s unless configured).
    """
    if isinstance(folder.path, Path):
        lock_path = folder.path / ".lock"
        with exclusive(
            lock_path,
            timeout=timeout,
            poll=0.2,
            on_timeout=lambda waited: MnistnnError(
                f"{lock_path}: another run of the same configuration still holds the "
                f"lock after {waited:.0f} s"
            ),
        ):
            yield
        return
    store = locations.store_at(folder.path)
    try:
        lease = store.lease(".lease", lease_owner(), ttl=lease_ttl(), timeout=timeout)
    except StorageUnavailable:
        raise
    except StorageError as exc:
        raise MnistnnError(f"{exc} (another run of the same configuration still holds it)") from exc
    with lease:
        yield


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is missing or unreadable.

    A transient storage error is raised (StorageUnavailable), never read as "missing".
    """
    try:
        value = json.loads(locations.read_bytes(path))
    except StorageUnavailable:
        raise
    except (OSError, ValueError, StorageError):
        return None
    return value if isinstance(value, dict) else None


def shorter_run(parent: RunFolder, epochs: int) -> RunFolder:
    """The folder that answers "the first `epochs` epochs" of a run that has trained more.

    It lives inside the longer run (`upto-0003/`, the same layout) so the longer run's own
    metrics, weights and report are never touched. When the longer run still keeps epoch
    `epochs`'s weights, its checkpoints and scores up to that epoch are copied in and nothing is
    trained; otherwise (pruned) the flow recomputes epochs 1..N there, bit-identically, since
    training depends only on the configuration, the data and (seed, epoch). Call under the
    parent's lock.
    """
    child = RunFolder(locations.join(parent.path, f"upto-{epochs:04d}"))
    run = json.loads(locations.read_bytes(parent.run_json))
    if isinstance(child.path, Path):
        for sub in (child.checkpoints, child.evals, child.figures):
            Path(sub).mkdir(parents=True, exist_ok=True)
    if not locations.exists(child.run_json):
        locations.write_json(
            child.run_json, {**run, "shorter_of": str(parent.path), "epochs": epochs}
        )
    name = f"epoch-{epochs:04d}.npz"
    final_weights = locations.join(parent.checkpoints, name)
    if locations.exists(final_weights) and not locations.exists(
        locations.join(child.checkpoints, name)
    ):
        for epoch in range(1, epochs + 1):
            stem = f"epoch-{epoch:04d}"
            _copy_if_present(locations.join(parent.checkpoints, f"{stem}.json"), child.checkpoints)
            _copy_if_present(locations.join(parent.evals, f"{stem}.json"), child.evals)
        _copy_if_present(final_weights, child.checkpoints)  # last: it makes the copy valid
    return child


def _copy_if_present(source: Location, folder: Location) -> None:
    """Copy `source` into `folder` whole (the same bytes, so its sha256 still holds)."""
    try:
        data = locations.read_bytes(source)
    except FileNotFoundError:  # NotFound too
        return
    locations.write_bytes(locations.join(folder, locations.name(source)), data)
