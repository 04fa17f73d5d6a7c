"""The registry's weights index: which versions hold weights with a given sha256, in small shards.

    index/<2 hex>.json      {"<first 16 hex of a weights sha256>": ["v0003", ...], ...}

Finding a finished run's version (the no-server answer, an idempotent re-registration) reads one
shard, whatever the number of versions: 256 shards hold about 4 entries each at 1,000 versions.
(It was a map inside registry.json, which every read of the registry then parsed: 29 of its 64
kB at 1,000 versions.) A version is added to its shard by compare-and-swap *before* the
registry.json commit that names it, so the index never misses a registered version; an entry
for a version never committed (a crash between the two) is harmless, since a lookup takes only
registered versions, and checks the full sha256 in their meta.json. Weights never change, so an
entry never goes stale.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mnistnn.core.storage import Store
from mnistnn.errors import NotFound, RegistryError

INDEX_PREFIX = "index/"
#: Hex digits of a weights sha256 that key the index (a match is checked in full).
WEIGHTS_KEY = 16


def shard_key(weights_sha256: str) -> str:
    """The shard that holds this sha256's entry."""
    return f"{INDEX_PREFIX}{weights_sha256[:2]}.json"


def indexed_versions(store: Store, weights_sha256: str) -> list[str]:
    """The versions the index lists for this sha256 (registered or not: the caller checks)."""
    key = shard_key(weights_sha256)
    try:
        raw = store.read_bytes(key)
    except NotFound:
        return []
    return _parse(raw, store.join(key)).get(weights_sha256[:WEIGHTS_KEY], [])


def add_to_index(store: Store, entries: Mapping[str, Sequence[str]]) -> None:
    """Add versions by weights sha256 (or its first `WEIGHTS_KEY` digits) to their shards: one
    compare-and-swap per shard, a no-op for what is there already."""
    shards: dict[str, dict[str, set[str]]] = {}
    for sha, versions in entries.items():
        shards.setdefault(shard_key(sha), {}).setdefault(sha[:WEIGHTS_KEY], set()).update(versions)
    for key, added in sorted(shards.items()):

        def step(
            current: bytes | None, key: str = key, added: dict[str, set[str]] = added
        ) -> bytes:
            index = {} if current is None else _parse(current, store.join(key))
            for sha, versions in added.items():
                index[sha] = sorted({*index.get(sha, []), *versions})  # the same bytes again
            return (json.dumps(index, sort_keys=True, separators=(",", ":")) + "\n").encode()

        store.update(key, step)


def _parse(raw: bytes, where: str) -> dict[str, list[str]]:
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{where}: unreadable weights index ({exc})") from exc
    if not isinstance(data, dict) or not all(
        isinstance(versions, list) and all(isinstance(v, str) for v in versions)
        for versions in data.values()
    ):
        raise RegistryError(f"{where}: the weights index must map sha256 prefixes to versions")
    return data


__all__ = ["INDEX_PREFIX", "WEIGHTS_KEY", "add_to_index", "indexed_versions", "shard_key"]
