"""Retention's finders of derived files nothing kept needs: Parquet, manifests, old predictions,
cache."""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from mnistnn.core import locations
from mnistnn.registry.retention_item import Item

_MANIFEST = re.compile(r"snapshots/([0-9a-f]{16})\.json")


def unreferenced_parquet(inventory: dict[str, Any], references: set[str]) -> list[Item]:
    """Parquet (with its summary and rejects) of `processed/` that nothing kept references."""
    groups: dict[str, list[str]] = {}
    for name in inventory:
        if name.startswith("processed/") and name.count("/") == 1:
            groups.setdefault(name[len("processed/") :][:16], []).append(name)
    items = []
    for sha16, names in sorted(groups.items()):
        if sha16 not in references and any(n.endswith(".parquet") for n in names):
            for name in sorted(names):
                items.append(Item(name, inventory[name][0], 1, "Parquet no kept model needs"))
    return items


def unreferenced_manifests(
    inventory: dict[str, Any], references: set[str], before: float
) -> list[Item]:
    """Snapshot manifests (`snapshots/<sha16>.json`) no kept run names, written before `before`
    (a manifest a starting run has just built is not named by any run folder yet). One is
    written each night the inbox changed, and it lists every batch: about 1.5 MB at 10,000."""
    items = []
    for name, (size, mtime) in sorted(inventory.items()):
        found = _MANIFEST.fullmatch(name)
        if found is not None and found.group(1) not in references and mtime < before:
            items.append(Item(name, size, 1, "snapshot manifest no kept run uses"))
    return items


def old_predictions(inventory: dict[str, Any], before: float) -> list[Item]:
    """Predictions written before `before`, except the newest of each input."""
    inputs: dict[str, dict[str, list[str]]] = {}
    for name in inventory:
        if name.startswith("predictions/") and name.count("/") == 1:
            stem = name[len("predictions/") :].partition(".")[0]
            inputs.setdefault(stem[:16], {}).setdefault(stem, []).append(name)
    items = []
    for outputs in inputs.values():
        newest = max(outputs, key=lambda s: max(inventory[n][1] for n in outputs[s]))
        for stem, names in sorted(outputs.items()):
            if stem != newest and max(inventory[n][1] for n in names) < before:
                items += [Item(n, inventory[n][0], 1, "old predictions") for n in sorted(names)]
    return items


def old_cache(before: float) -> list[Item]:
    """Download-cache entries of this machine last used before `before` (safe to delete)."""
    root = locations.cache_dir()
    items = []
    for entry in sorted(root.glob("src-*")) + sorted(root.glob("sha256/*")):
        with contextlib.suppress(FileNotFoundError):
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            stats = [os.stat(p) for p in files]
            if stats and max(s.st_mtime for s in stats) < before:
                size = sum(s.st_size for s in stats)
                items.append(Item(str(entry), size, len(files), "download cache"))
    return items


__all__ = ["old_cache", "old_predictions", "unreferenced_manifests", "unreferenced_parquet"]
