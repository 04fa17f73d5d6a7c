"""Registry reads that cost what they need: the sharded weights index and the challenger."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mnistnn.core.files import sha256_bytes
from mnistnn.errors import RegistryError
from mnistnn.model.checkpoint import weights_bytes
from mnistnn.registry.files import REGISTRY_FILE
from mnistnn.registry.store import ModelRegistry
from mnistnn.registry.weights_index import WEIGHTS_KEY, shard_key
from tests.registry.conftest import register, tiny


def counting_reads(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions whose meta.json `registry` reads from now on."""
    read: list[str] = []
    original = registry.read_meta

    def counted(version: str) -> Any:
        read.append(version)
        return original(version)

    monkeypatch.setattr(registry, "read_meta", counted)
    return read


def _edit_state(registry: ModelRegistry, change: Any) -> None:
    state = json.loads(registry.store.read_bytes(REGISTRY_FILE))
    change(state)
    registry.store.write_bytes(REGISTRY_FILE, json.dumps(state).encode())


def _shard(registry: ModelRegistry, sha: str) -> dict[str, list[str]]:
    return json.loads(registry.store.read_bytes(shard_key(sha)))  # type: ignore[no-any-return]


def _sha(seed: int) -> str:
    return sha256_bytes(weights_bytes(tiny(seed)))


def test_find_by_weights_reads_one_shard_and_one_meta(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seed in range(1, 6):
        register(registry, seed, 0.1 * seed)
    state = json.loads(registry.store.read_bytes(REGISTRY_FILE))
    assert state["indexed"] is True and "weights" not in state  # nothing of it in registry.json
    for seed in range(1, 6):
        assert _shard(registry, _sha(seed))[_sha(seed)[:WEIGHTS_KEY]] == [f"v000{seed}"]
    keys: list[str] = []
    read_bytes = registry.store.read_bytes
    monkeypatch.setattr(
        registry.store, "read_bytes", lambda key: keys.append(key) or read_bytes(key)
    )
    read = counting_reads(registry, monkeypatch)
    found = registry.find_by_weights(_sha(2))
    assert found is not None and found.version == "v0002" and found.weights_sha256 == _sha(2)
    assert read == ["v0002"]  # the index's match: one meta.json
    assert [k for k in keys if k.startswith("index/")] == [shard_key(_sha(2))]
    read.clear()
    assert registry.find_by_weights("f" * 64) is None
    assert read == []  # an unknown weights sha256 reads no meta.json at all


def test_an_index_entry_of_an_uncommitted_or_other_version_is_not_believed(
    registry: ModelRegistry,
) -> None:
    for seed in range(1, 4):
        register(registry, seed, 0.1 * seed)
    wanted = _sha(3)
    key = shard_key(wanted)
    shard = _shard(registry, wanted)
    shard[wanted[:WEIGHTS_KEY]] = ["v0001", "v0009", "v0003"]  # another's, a crash's, its own
    registry.store.write_bytes(key, json.dumps(shard).encode())
    found = registry.find_by_weights(wanted)
    assert found is not None and found.version == "v0003"  # each checked in full
    again = register(registry, 3, 0.9)  # and a re-registration still finds the first one
    assert again.version == "v0003" and registry.names() == ["v0001", "v0002", "v0003"]


def test_a_registry_from_before_the_shards_is_indexed_by_the_next_registration(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registries written before the sharded index: a map in registry.json (v0002 in it), or
    no index at all (v0001, v0003): read as before, moved to the shards by a registration."""
    for seed in range(1, 4):
        register(registry, seed, 0.1 * seed)
    for seed in range(1, 4):
        registry.store.delete(shard_key(_sha(seed)))

    def older(state: dict[str, Any]) -> None:
        state.pop("indexed")
        state["weights"] = {_sha(2)[:WEIGHTS_KEY]: "v0002"}

    _edit_state(registry, older)
    read = counting_reads(registry, monkeypatch)
    found = registry.find_by_weights(_sha(2))
    assert found is not None and found.version == "v0002" and read == ["v0002"]
    found = registry.find_by_weights(_sha(1))
    assert found is not None and found.version == "v0001"  # by reading uncovered meta.json
    register(registry, 4, 0.9)
    state = json.loads(registry.store.read_bytes(REGISTRY_FILE))
    assert state["indexed"] is True and "weights" not in state
    for seed in range(1, 5):
        assert _shard(registry, _sha(seed))[_sha(seed)[:WEIGHTS_KEY]] == [f"v000{seed}"]
    read.clear()
    assert registry.find_by_weights(_sha(1)) is not None
    assert read == ["v0001"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"weights": {"abc": 3}}, r"registry.json: weights must map"),
        ({"indexed": "yes"}, r"registry.json: indexed must be true or false, not 'yes'"),
    ],
)
def test_a_bad_weights_index_is_refused_in_one_line(
    local_registry: ModelRegistry, edit: dict[str, Any], message: str
) -> None:
    register(local_registry, 1, 0.5)
    _edit_state(local_registry, lambda state: state.update(edit))
    with pytest.raises(RegistryError, match=message):
        local_registry.champion()


def test_a_bad_shard_is_refused_naming_it(local_registry: ModelRegistry) -> None:
    register(local_registry, 1, 0.5)
    local_registry.store.write_bytes(shard_key(_sha(1)), b'{"ab": "v0001"}')
    with pytest.raises(RegistryError, match=r"index/..\.json: the weights index must map"):
        local_registry.find_by_weights(_sha(1))


def test_the_challenger_is_found_reading_from_the_newest(
    local_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(local_registry, 1, 0.5)
    for seed in range(2, 8):
        register(local_registry, seed, 0.1)  # every one loses to v0001
    read = counting_reads(local_registry, monkeypatch)
    challenger = local_registry.challenger("v0001")
    assert challenger is not None and challenger.version == "v0007"
    assert read == ["v0007"]
    assert local_registry.challenger("v0007") is None


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        (["v0001", "v12"], r"registry.json: versions\[1\] is not a version name: 'v12'"),
        (["v0001", 7], r"registry.json: versions\[1\] is not a version name: 7"),
        (["v0001\n"], r"registry.json: versions\[0\] is not a version name: 'v0001\\n'"),
        (["v0001", "v0001"], r"registry.json: versions lists a version twice"),
    ],
)
def test_a_bad_versions_list_is_refused_naming_the_item(
    local_registry: ModelRegistry, versions: list[Any], message: str
) -> None:
    register(local_registry, 1, 0.5)
    _edit_state(local_registry, lambda state: state.update(versions=versions))
    with pytest.raises(RegistryError, match=message):
        local_registry.names()
