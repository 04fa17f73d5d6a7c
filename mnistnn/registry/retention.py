"""Retention (`mnistnn gc`): what a year of nightly runs may free, and never what a model needs.

Kept, always: for the champion, the challenger (the newest version after the champion that lost
its promotion) and the newest `keep` versions, what loads, re-scores, explains (`models show`)
and retrains them bit-identically: the whole registry (weights, meta.json), their run folders
(weights, metrics, report, run.json, every checkpoint's metadata and the final checkpoint), the
snapshot manifests their runs name and the Parquet of those snapshots' members and test data;
the inbox ledger, every raw input (`raw/`, `incoming/`, `unlabelled/`: never touched), and the
Parquet of every batch in the inbox now (the next nightly snapshot is built from them).

Freed: the earlier epochs' weights of finished runs (`checkpoints/epoch-N.npz` below the final
one), run folders of versions no longer kept, and of runs never registered whose last write is
older than `run_days`; Parquet (with its summary and rejects) that nothing kept references;
snapshot manifests no kept run names, older than `run_days` (one a night, listing every batch);
predictions older than `prediction_days`, never the newest of each input; and this machine's
download cache entries older than `cache_days`.

A run folder is freed or pruned only under its own run lock (an flock locally, the lease on
S3), taken without waiting: a running flow holds it, so its folder is skipped ("busy") and
nothing of it is touched. Every deletion is logged, and each applied gc run is recorded as a
whole object `models/gc-log/<time>.json` (plan, sizes, what was deleted and skipped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.core.storage import Store
from mnistnn.errors import ConfigError, MnistnnError, StorageUnavailable
from mnistnn.registry.records import ModelVersion
from mnistnn.registry.retention_files import (
    old_cache,
    old_predictions,
    unreferenced_manifests,
    unreferenced_parquet,
)
from mnistnn.registry.retention_item import Item
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.folders import RunFolder, run_lock

log = logging.getLogger(__name__)

DAY = 86400.0
GC_LOG = "models/gc-log"
_CHECKPOINT = re.compile(r"^checkpoints/epoch-(\d+)\.npz$")
_HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Policy:
    """How much history to keep; `check` refuses bad values in one line before anything runs."""

    keep: int = 10
    run_days: float = 7.0
    prediction_days: float = 90.0
    cache_days: float = 1.0

    def check(self) -> Policy:
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) or self.keep < 1:
            raise ConfigError(
                f"keep must be an integer >= 1 (the newest versions kept, besides the champion "
                f"and the challenger), got {self.keep!r}"
            )
        for name in ("run_days", "prediction_days", "cache_days"):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number of days >= 0, got {value!r}")
        return self


@dataclass
class Plan:
    """What gc would free, and what it keeps."""

    root: str
    total_bytes: int
    kept_versions: dict[str, str]
    items: list[Item] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(item.size for item in self.items)

    def lines(self, applied: bool = False) -> list[str]:
        """What the CLI prints: one line per item, then the totals and what is kept."""
        shown = [f"  {item.key}  {human(item.size)}  ({item.reason})" for item in self.items]
        verb = "freed" if applied else "would free"
        done = len(self.deleted) if applied else len(self.items)
        size = sum(i.size for i in self.items if i.key in self.deleted) if applied else None
        freed = self.freed_bytes if size is None else size
        shown.append(
            f"{verb} {human(freed)} in {done} item(s) of {human(self.total_bytes)} in {self.root}"
        )
        shown += [f"skipped {key}" for key in self.skipped]
        kept = ", ".join(f"{v} ({why})" for v, why in self.kept_versions.items()) or "none"
        shown.append(f"kept versions: {kept}")
        if not applied and self.items:
            shown.append("run `mnistnn gc --apply` to delete them")
        return shown

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "freed_bytes": self.freed_bytes}


def human(size: float) -> str:
    """1.5 MB style sizes (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def kept_versions(versions: list[ModelVersion], keep: int) -> dict[str, str]:
    """version -> why it is kept: the champion, the challenger, the newest `keep`."""
    kept: dict[str, str] = {}
    names = [v.version for v in versions]
    champion = next((v for v in versions if v.is_champion), None)
    if champion is not None:
        kept[champion.version] = "champion"
        newer = versions[names.index(champion.version) + 1 :]
        losers = [v for v in newer if v.decision is not None and not v.decision.promoted]
        if losers:
            kept[losers[-1].version] = "challenger"
    for version in names[-keep:]:
        kept.setdefault(version, "newest")
    return kept


def plan(paths: DataPaths, policy: Policy, *, now: float | None = None) -> Plan:
    """What gc would free under `paths` (nothing is deleted); see the module doc."""
    policy.check()
    clock = time.time() if now is None else now
    store = paths.store
    inventory = store.list_info("")
    versions = ModelRegistry(paths.models).versions()
    kept = kept_versions(versions, policy.keep)
    result = Plan(str(paths.root), sum(size for size, _ in inventory.values()), kept)
    runs = _group(inventory, "runs/")
    by_run = {_run_key(v.run_dir): v.version for v in versions if v.run_dir}
    references = {sha[:16] for v in versions if v.version in kept for sha in _shas(v)}
    for key, objects in sorted(runs.items()):
        version = by_run.get(key)
        age = clock - max(mtime for _, mtime in objects.values())
        if version is not None and version not in kept:
            reason = f"run of {version}, no longer kept"
        elif version is None and age > policy.run_days * DAY and ".lease" not in objects:
            reason = f"never registered, last written {age / DAY:.1f} days ago"
        else:
            references |= _run_references(store, key, objects)
            result.items += _old_checkpoints(key, objects)
            continue
        size = sum(size for size, _ in objects.values())
        result.items.append(Item(f"runs/{key}/", size, len(objects), reason, run=key))
    references |= _snapshot_members(store, references) | _inbox_batches(paths)
    result.items += unreferenced_parquet(inventory, references)
    result.items += unreferenced_manifests(inventory, references, clock - policy.run_days * DAY)
    result.items += old_predictions(inventory, clock - policy.prediction_days * DAY)
    result.items += old_cache(clock - policy.cache_days * DAY)
    return result


def apply(paths: DataPaths, policy: Policy, *, now: float | None = None) -> Plan:
    """Plan, then delete what the plan lists (each run folder under its run lock), log each
    deletion and record the gc run in `models/gc-log/`."""
    result = plan(paths, policy, now=now)
    store = paths.store
    for item in result.items:
        try:
            if item.run is not None:
                _delete_run_item(paths, store, item)
            elif item.key.startswith("/"):
                _delete_cache(Path(item.key))
            else:
                store.delete(item.key)
        except _Busy as busy:
            log.info("gc: skipped %s: %s", item.key, busy)
            result.skipped.append(f"{item.key}: {busy}")
            continue
        log.info("gc: deleted %s (%s, %s)", item.key, human(item.size), item.reason)
        result.deleted.append(item.key)
    stamp = datetime.fromtimestamp(time.time(), UTC).strftime("%Y%m%dT%H%M%S%fZ")
    record = json.dumps({"schema": 1, "at": stamp, **result.to_dict()}, sort_keys=True)
    store.create(f"{GC_LOG}/{stamp}-{uuid.uuid4().hex[:8]}.json", record.encode())
    return result


# -- internals ---------------------------------------------------------------------------------
class _Busy(MnistnnError):
    """A run folder whose lock a running flow holds."""


def _group(inventory: dict[str, tuple[int, float]], prefix: str) -> dict[str, dict[str, Any]]:
    """`runs/<key>/<rest>` objects grouped by key ({key: {rest: (size, mtime)}})."""
    groups: dict[str, dict[str, Any]] = {}
    for name, info in inventory.items():
        if name.startswith(prefix) and name.count("/") >= 2:
            key, _, rest = name[len(prefix) :].partition("/")
            groups.setdefault(key, {})[rest] = info
    return groups


def _run_key(run_dir: str) -> str:
    return locations.name(run_dir.rstrip("/"))


def _shas(version: ModelVersion) -> list[str]:
    return [version.train_sha256, version.test_sha256]


def _run_references(store: Store, key: str, objects: dict[str, Any]) -> set[str]:
    """Every sha16 named in a kept run's run.json and final checkpoint metadata (its snapshot,
    test data, recent rows): the Parquet and manifests it needs."""
    found: set[str] = set()
    epochs = [int(m.group(1)) for rest in objects if (m := _CHECKPOINT.match(rest))]
    names = ["run.json"] + ([f"checkpoints/epoch-{max(epochs):04d}.json"] if epochs else [])
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            found |= set(_HEX16.findall(store.read_bytes(f"runs/{key}/{name}").decode()))
    return found


def _old_checkpoints(key: str, objects: dict[str, Any]) -> list[Item]:
    """A finished run's checkpoint weights before its final epoch (the final one stays, so the
    run can still be continued; `weights.npz` is its copy)."""
    if "weights.npz" not in objects or "metrics.json" not in objects:
        return []
    epochs = {int(m.group(1)): rest for rest in objects if (m := _CHECKPOINT.match(rest))}
    final = max(epochs, default=0)
    return [
        Item(f"runs/{key}/{rest}", objects[rest][0], 1, "checkpoint of a finished run", run=key)
        for epoch, rest in sorted(epochs.items())
        if epoch < final
    ]


def _snapshot_members(store: Store, references: set[str]) -> set[str]:
    """The sha16 of every member of the referenced snapshot manifests."""
    members: set[str] = set()
    for sha16 in sorted(references):
        with contextlib.suppress(FileNotFoundError, ValueError):
            manifest = json.loads(store.read_bytes(f"snapshots/{sha16}.json"))
            members |= {str(m["sha256"])[:16] for m in manifest.get("members", [])}
            members |= {str(m.get("parquet", ""))[:16] for m in manifest.get("members", [])}
    return members


def _inbox_batches(paths: DataPaths) -> set[str]:
    """The sha16 of every content the ledger holds for a name in the inbox now."""
    from mnistnn.data.inbox import ledger_path, ready_entries

    with contextlib.suppress(FileNotFoundError):
        ledger = json.loads(locations.read_bytes(ledger_path(paths)))
        names = ready_entries(paths.incoming, 0.0, time.time())[0]
        digests = {ledger["names"][n] for n in names if n in ledger["names"]}
        # a name not in the ledger yet is a batch being ingested: keep everything the ledger
        # holds until the next gc (safe and cheap: Parquet of small batches)
        if any(n not in ledger["names"] for n in names):
            digests |= set(ledger["batches"])
        return {digest[:16] for digest in digests}
    return set()


def _delete_run_item(paths: DataPaths, store: Store, item: Item) -> None:
    """Delete a run folder or checkpoint, holding the run's lock (without waiting for it)."""
    assert item.run is not None
    folder = RunFolder(locations.join(paths.runs, item.run))
    try:
        with run_lock(folder, timeout=0.0):
            if item.key.endswith("/"):
                for key in store.list(item.key):
                    if key not in (f"{item.key}.lease", f"{item.key}.lock"):
                        store.delete(key)  # the lease goes when released
                if isinstance(folder.path, Path):  # a waiter locks the file anew (`exclusive`)
                    Path(folder.path, ".lock").unlink(missing_ok=True)
            else:
                store.delete(item.key)
    except StorageUnavailable:
        raise
    except MnistnnError as exc:
        raise _Busy("a running flow holds its run lock") from exc
    if item.key.endswith("/") and isinstance(folder.path, Path):
        for parent, _, _ in sorted(os.walk(folder.path), reverse=True):
            with contextlib.suppress(OSError):  # only empty folders: a new run's files stay
                os.rmdir(parent)


def _delete_cache(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


__all__ = ["GC_LOG", "Item", "Plan", "Policy", "apply", "human", "kept_versions", "plan"]
