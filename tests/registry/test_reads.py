"""Registry reads that cost what they need: the weights index and the challenger."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mnistnn.core.files import sha256_bytes
from mnistnn.errors import RegistryError
from mnistnn.model.checkpoint import weights_bytes
from mnistnn.registry.files import REGISTRY_FILE
from mnistnn.registry.log import WEIGHTS_KEY
from mnistnn.registry.store import ModelRegistry
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


def test_find_by_weights_reads_one_meta_through_the_index(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seed in range(1, 6):
        register(registry, seed, 0.1 * seed)
    state = json.loads(registry.store.read_bytes(REGISTRY_FILE))
    assert sorted(state["weights"].values()) == [f"v000{n}" for n in range(1, 6)]
    wanted = sha256_bytes(weights_bytes(tiny(2)))
    read = counting_reads(registry, monkeypatch)
    found = registry.find_by_weights(wanted)
    assert found is not None and found.version == "v0002" and found.weights_sha256 == wanted
    assert read == ["v0002", "v0002"]  # the index's match, then the version returned
    read.clear()
    assert registry.find_by_weights("f" * 64) is None
    assert read == []  # an unknown weights sha256 reads no meta.json at all


def test_a_stale_or_wrong_index_entry_is_not_believed(registry: ModelRegistry) -> None:
    for seed in range(1, 4):
        register(registry, seed, 0.1 * seed)
    wanted = sha256_bytes(weights_bytes(tiny(3)))

    def wrong(state: dict[str, Any]) -> None:  # v0003's key points at v0001, v0003 unindexed
        state["weights"] = {k: v for k, v in state["weights"].items() if v != "v0003"}
        state["weights"][wanted[:WEIGHTS_KEY]] = "v0001"

    _edit_state(registry, wrong)
    found = registry.find_by_weights(wanted)
    assert found is not None and found.version == "v0003"  # checked in full, then scanned
    again = register(registry, 3, 0.9)  # and a re-registration still finds the first one
    assert again.version == "v0003" and registry.names() == ["v0001", "v0002", "v0003"]


def test_a_registry_from_before_the_index_is_indexed_by_the_next_registration(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seed in range(1, 4):
        register(registry, seed, 0.1 * seed)
    _edit_state(registry, lambda state: state.pop("weights"))
    found = registry.find_by_weights(sha256_bytes(weights_bytes(tiny(1))))
    assert found is not None and found.version == "v0001"  # found by reading every meta.json
    register(registry, 4, 0.9)
    state = json.loads(registry.store.read_bytes(REGISTRY_FILE))
    assert sorted(state["weights"].values()) == ["v0001", "v0002", "v0003", "v0004"]
    read = counting_reads(registry, monkeypatch)
    assert registry.find_by_weights(sha256_bytes(weights_bytes(tiny(1)))) is not None
    assert read == ["v0001", "v0001"]


def test_a_bad_weights_index_is_refused_in_one_line(local_registry: ModelRegistry) -> None:
    register(local_registry, 1, 0.5)
    _edit_state(local_registry, lambda state: state.update(weights={"abc": 3}))
    with pytest.raises(RegistryError, match=r"registry.json: weights must map"):
        local_registry.champion()


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
