"""registry.json and the champion's history: an append-only log, its tail kept in registry.json.

Every register, promote, rollback and approval appends one entry (`seq`, time, action, the
version it concerns, the champion after it and before it, the actor, the decision, the reason)
in the same compare-and-swap that changes the champion, so the log and the champion can never
disagree. registry.json carries only the newest entries: once the tail reaches `2 * SEGMENT`
entries, the oldest `SEGMENT` move to an immutable segment object `log/<first seq>.json`
(created before the commit, with content fixed by the entries, so a retried or racing writer
creates the same bytes) and registry.json keeps `compacted` (entries moved out) and `base_stack`
(the champion stack they leave). Reading the champion costs at most 2 * SEGMENT entries however
long the history grows; `models history` reads the segments once and the tail.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistnn.config import SCHEMA_VERSION
from mnistnn.core.records import Fields
from mnistnn.core.storage import Store
from mnistnn.errors import NotFound, RegistryError
from mnistnn.registry.records import VERSION_NAME, now_utc

ACTIONS = ("register", "promote", "rollback", "approval")
#: Entries per immutable log segment (registry.json holds fewer than twice this many).
SEGMENT = 50
LOG_PREFIX = "log/"


@dataclass
class RegistryState:
    """The content of registry.json: versions, the champion and the newest history entries."""

    versions: list[str]
    champion: str | None
    history: list[dict[str, Any]]
    compacted: int = 0
    base_stack: list[str] = field(default_factory=list)
    #: The older weights index of registries from before `weights_index` (first 16 hex digits
    #: of a weights sha256 -> version), read until the next registration moves it to the shards.
    weights: dict[str, str] = field(default_factory=dict)
    #: Every version is in the sharded weights index (`mnistnn.registry.weights_index`).
    indexed: bool = False

    def append(
        self,
        action: str,
        version: str,
        *,
        champion: str | None,
        reason: str,
        actor: str | None = None,
        decision: str | None = None,
    ) -> dict[str, Any]:
        """Log one entry and make `champion` the champion (the same one: no change)."""
        entry = {
            "seq": self.compacted + len(self.history) + 1,
            "at": now_utc(),
            "action": action,
            "version": version,
            "champion": champion,
            "previous": self.champion,
            "actor": actor,
            "decision": decision,
            "reason": reason,
        }
        self.history.append(entry)
        self.champion = champion
        return entry

    def change_champion(
        self, version: str, action: str, reason: str, actor: str | None = None
    ) -> None:
        """Point at a new champion and log why."""
        self.append(action, version, champion=version, reason=reason, actor=actor, decision=action)

    def stack(self, where: Path | str) -> list[str]:
        """The champion stack after every entry (rollback pops it)."""
        return champion_stack(self.history, where, self.base_stack)

    def compact(self, store: Store) -> None:
        """Move the oldest SEGMENT entries to their segment object once the tail is long."""
        if len(self.history) < 2 * SEGMENT:
            return
        moved = self.history[:SEGMENT]
        store.create(segment_key(self.compacted + 1), json_bytes(moved))  # exists: same bytes
        self.base_stack = champion_stack(moved, "log", self.base_stack)
        self.history = self.history[SEGMENT:]
        self.compacted += SEGMENT

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "versions": self.versions,
            "champion": self.champion,
            "history": self.history,
        }
        if self.weights:
            data["weights"] = self.weights
        if self.indexed:
            data["indexed"] = True
        if self.compacted:
            data["compacted"] = self.compacted
            data["base_stack"] = self.base_stack
        return data


def segment_key(first_seq: int) -> str:
    return f"{LOG_PREFIX}{first_seq:08d}.json"


def json_bytes(obj: Any) -> bytes:
    """Indented, key-sorted JSON, as every record of the project is written."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def state_bytes(state: RegistryState) -> bytes:
    """registry.json: key-sorted and compact, which json encodes in C (indented JSON is encoded
    in Python: 10 ms a write at 1,000 versions, growing with the versions and weights index)."""
    text = json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode("utf-8")


def parse_state(data: object, path: Path | str) -> RegistryState:
    """Validate registry.json's structure and its internal consistency."""
    fields = Fields(
        data, path, error=RegistryError, what="a JSON object with versions, champion and history"
    )
    versions = fields.array("versions")
    if not _all_names(versions):  # one C-speed check; the slow walk only to name the bad one
        for index, item in enumerate(versions):
            if not isinstance(item, str) or not VERSION_NAME.match(item):
                raise RegistryError(f"{path}: versions[{index}] is not a version name: {item!r}")
    known = set(versions)
    if len(known) != len(versions):
        raise RegistryError(f"{path}: versions lists a version twice")
    champion = fields.optional_string("champion")
    if champion is not None and champion not in known:
        raise RegistryError(f"{path}: champion {champion!r} is not in versions")
    history = fields.array("history")
    slow = () if _all_entries(history, known) else history  # the walk only to name a bad one
    for index, entry in enumerate(slow):
        item = Fields(entry, f"{path}: history[{index}]", error=RegistryError)
        if item.string("action") not in ACTIONS:
            item.fail("action", f"one of {', '.join(ACTIONS)}")
        named = item.optional_string("champion")
        if named is not None and named not in known:  # a set: this is per entry
            item.fail("champion", "a registered version")
        item.optional_string("previous")
    compacted = fields.integer("compacted") if "compacted" in fields.data else 0
    base = fields.array("base_stack") if "base_stack" in fields.data else []
    stack = champion_stack(history, path, base)
    if (stack[-1] if stack else None) != champion:
        raise RegistryError(f"{path}: champion {champion!r} does not match its history")
    weights = fields.obj("weights") if "weights" in fields.data else {}
    if not {type(v) for v in weights.values()} <= {str}:
        raise RegistryError(f"{path}: weights must map weights sha256 prefixes to versions")
    indexed = fields.data.get("indexed", False)
    if not isinstance(indexed, bool):
        raise RegistryError(f"{path}: indexed must be true or false, not {indexed!r}")
    state = RegistryState(list(versions), champion, list(history), compacted, list(base))
    state.weights, state.indexed = weights, indexed
    return state


_NAMES = re.compile(r"(?:v[0-9]{4,}\n)*")  # VERSION_NAME, each followed by a newline


def _all_names(versions: list[Any]) -> bool:
    """Whether every item is a version name (a newline never is in one, so joining is exact;
    an item that is not a string fails the join)."""
    try:
        joined = "\n".join(versions)
    except TypeError:
        return False
    return _NAMES.fullmatch(f"{joined}\n" if versions else "") is not None


def _all_entries(history: list[Any], known: set[str]) -> bool:
    """Whether every history entry is well formed (the walk that names a bad one is slow)."""
    try:
        return all(
            entry["action"] in ACTIONS
            and (entry.get("champion") is None or entry["champion"] in known)
            and type(entry.get("previous", "")) in (str, type(None))
            for entry in history
        )
    except (TypeError, KeyError, AttributeError):
        return False


def champion_stack(
    history: list[dict[str, Any]], path: Path | str, base: list[str] | None = None
) -> list[str]:
    """Replay the history: a change of champion pushes it, a rollback pops back to the last."""
    stack: list[str] = list(base or [])
    for index, entry in enumerate(history):
        if entry["action"] == "rollback":
            if len(stack) < 2 or stack[-2] != entry["champion"]:
                raise RegistryError(
                    f"{path}: history[{index}] rolls back to a champion it never had"
                )
            stack.pop()
        elif entry["champion"] is not None and entry["champion"] != entry.get("previous", -1):
            stack.append(entry["champion"])
    return stack


def read_history(
    store: Store, state: RegistryState, where: str, last: int | None = None
) -> list[dict[str, Any]]:
    """Every entry (or the newest `last`), oldest first: the committed segments, then
    registry.json's tail; `last` reads only the segments that hold them (named by their first
    entry, so none is listed): the same few at any length of history."""
    tail = [{**e, "seq": state.compacted + i + 1} for i, e in enumerate(state.history)]
    if last is not None and last <= len(tail):
        return tail[len(tail) - last :]
    oldest = 1 if last is None else max(1, state.compacted + len(tail) - last + 1)
    if last is None:
        keys = store.list(LOG_PREFIX)
    else:
        first = (oldest - 1) // SEGMENT * SEGMENT + 1
        keys = [segment_key(seq) for seq in range(first, state.compacted + 1, SEGMENT)]
    entries: list[dict[str, Any]] = []
    for key in keys:
        entries += [
            e
            for e in _segment(store, key, where)
            if isinstance(e, dict) and oldest <= e.get("seq", 0) <= state.compacted
        ]
    entries.sort(key=lambda entry: entry["seq"])
    if [entry["seq"] for entry in entries] != list(range(oldest, state.compacted + 1)):
        raise RegistryError(f"{where}/{LOG_PREFIX}: history segments are missing entries")
    return entries + tail


def _segment(store: Store, key: str, where: str) -> list[Any]:
    try:
        segment = json.loads(store.read_bytes(key).decode("utf-8"))
    except NotFound:
        return []  # then reported as missing entries
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{where}/{key}: unreadable history segment ({exc})") from exc
    if not isinstance(segment, list):
        raise RegistryError(f"{where}/{key}: a history segment must be a JSON list")
    return segment
