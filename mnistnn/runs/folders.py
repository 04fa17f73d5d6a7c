"""Run folders: one per (configuration, train data, test data), found again by the same inputs.

    data/runs/<run-key>/
        run.json                 what the run is: config, data hashes (written once)
        checkpoints/epoch-0003.npz + .json
        evals/epoch-0003.json    test-set scores of checkpoint 3
        metrics.json             per-epoch list, rebuilt from the checkpoints and evals
        weights.npz              the final weights (a copy of the last checkpoint's)
        figures/*.png  report.md
The number of epochs is not part of the key: asking for more epochs later continues the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistnn.config import SCHEMA_VERSION, NetworkConfig
from mnistnn.core.files import write_bytes_atomic, write_json_atomic
from mnistnn.core.locks import exclusive
from mnistnn.errors import MnistnnError


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
    """Paths inside one run folder."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def evals(self) -> Path:
        return self.path / "evals"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def weights(self) -> Path:
        return self.path / "weights.npz"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def initial(self) -> Path:
        """The weights epoch 1 starts from in a warm-started run (a copy of the champion's)."""
        return self.path / "initial.npz"

    def eval_path(self, epoch: int) -> Path:
        return self.evals / f"epoch-{epoch:04d}.json"


def run_folder(
    runs_root: str | os.PathLike[str],
    config: NetworkConfig,
    train_sha256: str,
    test_sha256: str,
    warm_start: dict[str, Any] | None = None,
) -> RunFolder:
    """The folder of the run of these inputs (nothing is created)."""
    return RunFolder(Path(runs_root) / run_key(config, train_sha256, test_sha256, warm_start))


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
    if fresh and folder.path.exists():
        for child in folder.path.iterdir():
            if child.name != ".lock":
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for sub in (folder.checkpoints, folder.evals, folder.figures):
        sub.mkdir(parents=True, exist_ok=True)
    if not folder.run_json.exists():
        write_json_atomic(
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


@contextlib.contextmanager
def run_lock(folder: RunFolder, timeout: float = 3600.0) -> Iterator[None]:
    """Hold the run folder's exclusive lock: a second run of the same inputs waits here.

    The OS drops the lock when the holder dies (even by SIGKILL), so a crash never leaves it stuck.
    """
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


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
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
    child = RunFolder(parent.path / f"upto-{epochs:04d}")
    run = json.loads(parent.run_json.read_text(encoding="utf-8"))
    for sub in (child.checkpoints, child.evals, child.figures):
        sub.mkdir(parents=True, exist_ok=True)
    if not child.run_json.exists():
        write_json_atomic(child.run_json, {**run, "shorter_of": str(parent.path), "epochs": epochs})
    final_weights = parent.checkpoints / f"epoch-{epochs:04d}.npz"
    if final_weights.exists() and not (child.checkpoints / final_weights.name).exists():
        for epoch in range(1, epochs + 1):
            name = f"epoch-{epoch:04d}"
            _copy_if_present(parent.checkpoints / f"{name}.json", child.checkpoints)
            _copy_if_present(parent.evals / f"{name}.json", child.evals)
        _copy_if_present(final_weights, child.checkpoints)  # last: it makes the copy valid
    return child


def _copy_if_present(source: Path, folder: Path) -> None:
    """Copy `source` into `folder` atomically (the same bytes, so its sha256 still holds)."""
    if source.exists():
        write_bytes_atomic(folder / source.name, source.read_bytes())
