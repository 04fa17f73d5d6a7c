"""The registry's records: decisions round-trip, corrupt registry.json and meta.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mnistnn.core.records import Fields
from mnistnn.errors import RegistryError
from mnistnn.registry.log import champion_stack, parse_state
from mnistnn.registry.records import PromotionDecision, parse_meta, version_field
from mnistnn.registry.store import ModelRegistry
from tests.registry.conftest import register


def test_decision_is_json_able(registry: ModelRegistry) -> None:
    register(registry, 1, 0.9)
    decision = register(registry, 2, 0.8)
    data = json.loads(json.dumps(decision.to_dict()))
    assert PromotionDecision.from_dict(data) == decision
    assert json.loads(json.dumps(registry.get("v0002").to_dict()))["decision"] == data


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"versions": "v0001", "champion": null, "history": []}', "'versions' must be a list"),
        ('{"versions": ["x1"], "champion": null, "history": []}', "not a version name"),
        ('{"versions": ["v0001", "v0001"], "champion": null, "history": []}', "twice"),
        ('{"versions": ["v0001"], "champion": "v0002", "history": []}', "not in versions"),
        ('{"versions": ["v0001"], "champion": "v0001", "history": []}', "does not match"),
        (
            '{"versions": ["v0001"], "champion": "v0001", "history": [{"action": "x", '
            '"champion": "v0001", "previous": null}]}',
            "'action' must be one of",
        ),
    ],
)
def test_corrupt_registry_json_names_the_file(
    registry: ModelRegistry, content: str, message: str
) -> None:
    register(registry, 1, 0.9)
    registry.store.write_bytes("registry.json", content.encode("utf-8"))
    with pytest.raises(RegistryError, match=message) as info:
        registry.versions()
    assert registry.where("registry.json") in str(info.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda meta: "{truncated", "unreadable version metadata"),
        (lambda meta: "[1, 2]", "expected a JSON object"),
        (lambda meta: json.dumps({**meta, "metrics": {}}), "'accuracy' is missing"),
        (lambda meta: json.dumps({**meta, "weights_sha256": 3}), "'weights_sha256' must be"),
        (lambda meta: json.dumps({**meta, "version": "v0007"}), "expected 'v0001'"),
    ],
)
def test_corrupt_meta_json_names_the_file(registry: ModelRegistry, edit: Any, message: str) -> None:
    register(registry, 1, 0.9)
    key = "v0001/meta.json"
    registry.store.write_bytes(key, edit(json.loads(registry.store.read_bytes(key))).encode())
    with pytest.raises(RegistryError, match=message) as info:
        registry.get("v0001")
    assert registry.where(key) in str(info.value)


# -- files written by earlier runs ----------------------------------------------------------------
_SHA_A, _SHA_C = "a" * 64, "c" * 64
#: registry.json as mnistnn 0.1.0 wrote it (two registrations, then a rollback).
_OLD_REGISTRY: dict[str, Any] = {
    "champion": "v0001",
    "history": [
        {
            "action": "register",
            "at": "2026-12-01T21:59:14+00:00",
            "champion": "v0001",
            "previous": None,
            "reason": "first model: v0001 (accuracy 0.9000) becomes champion",
        },
        {
            "action": "register",
            "at": "2026-12-01T21:59:14+00:00",
            "champion": "v0002",
            "previous": "v0001",
            "reason": "v0002 (accuracy 0.9500) replaces champion v0001 (0.9000)",
        },
        {
            "action": "rollback",
            "at": "2026-12-01T21:59:14+00:00",
            "champion": "v0001",
            "previous": "v0002",
            "reason": "rollback: v0001 replaces champion v0002",
        },
    ],
    "schema_version": 1,
    "versions": ["v0001", "v0002"],
}
#: v0002/meta.json as mnistnn 0.1.0 wrote it (config shortened: the registry keeps it as is).
_OLD_META: dict[str, Any] = {
    "config": {"hidden_nodes": 4, "seed": 2},
    "created": "2026-12-01T21:59:14+00:00",
    "decision": {
        "accuracy": 0.95,
        "champion_accuracy": 0.9,
        "champion_rescored": False,
        "champion_version": "v0001",
        "min_delta": 0.0,
        "promoted": True,
        "reason": "v0002 (accuracy 0.9500) replaces champion v0001 (0.9000)",
        "version": "v0002",
    },
    "flow_run_id": None,
    "metrics": {"accuracy": 0.95, "confident": 0.85, "mse": 0.01},
    "mnistnn_version": "0.1.0",
    "run_dir": None,
    "schema_version": 1,
    "scores": {_SHA_A: 0.95},
    "test_sha256": _SHA_A,
    "train_sha256": _SHA_C,
    "version": "v0002",
    "weights_file": "weights.npz",
    "weights_sha256": "cb3fecd8a5ec3dc5dbca5aac2612269c24a8654b98d2bc313c97d52f26c7e5a4",
}


def test_records_from_earlier_runs_still_parse() -> None:
    path = Path("models/registry.json")
    state = parse_state(json.loads(json.dumps(_OLD_REGISTRY)), path)
    assert (state.versions, state.champion) == (["v0001", "v0002"], "v0001")
    assert champion_stack(state.history, path) == ["v0001"]
    assert state.to_json() == _OLD_REGISTRY
    # A decision without champion_rescored (the field came later) reads as not re-scored.
    old_decision = {k: v for k, v in _OLD_META["decision"].items() if k != "champion_rescored"}
    meta = parse_meta({**_OLD_META, "decision": old_decision}, Path("models/v0002/meta.json"))
    version = meta.to_model_version(is_champion=False)
    assert (version.version, version.accuracy, version.confident) == ("v0002", 0.95, 0.85)
    assert (version.test_sha256, version.train_sha256) == (_SHA_A, _SHA_C)
    assert (version.run_dir, version.flow_run_id, version.is_champion) == (None, None, False)
    assert version.weights_sha256 == _OLD_META["weights_sha256"]
    assert version.scores == {_SHA_A: 0.95}
    assert version.decision == PromotionDecision(
        True, "v0002", 0.95, "v0001", 0.9, 0.0, old_decision["reason"], False
    )


def test_written_files_keep_the_earlier_format(registry: ModelRegistry) -> None:
    register(registry, 1, 0.90)
    register(registry, 2, 0.95)
    registry.rollback()
    data = json.loads(registry.store.read_bytes("registry.json"))
    # the weights index came later (`indexed`: every version is in index/): an earlier reader
    # ignores it, and an earlier writer drops it, so the registry is read as one from before
    # the index until the next registration indexes it again (tests/registry/test_reads)
    assert set(data) == {*_OLD_REGISTRY, "indexed"}
    # the history log adds fields (seq, version, actor, decision) and keeps every earlier one
    assert all(set(e) >= set(_OLD_REGISTRY["history"][0]) for e in data["history"])
    assert [e["reason"] for e in data["history"]] == [e["reason"] for e in _OLD_REGISTRY["history"]]
    meta = json.loads(registry.store.read_bytes("v0002/meta.json"))
    assert set(meta) == set(_OLD_META)
    # the promotion gate adds its fields (policy, evidence, ...) beside every earlier one
    assert {k: meta["decision"][k] for k in _OLD_META["decision"]} == _OLD_META["decision"]
    assert (meta["weights_file"], meta["schema_version"]) == ("weights.npz", 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "x: field 'version' is missing"),
        ({"version": "x1"}, "x: field 'version' must be a version such as v0001, got 'x1'"),
        ({"version": "v001"}, "x: field 'version' must be a version such as v0001, got 'v001'"),
        ({"version": 1}, "x: field 'version' must be a version such as v0001, got 1"),
    ],
)
def test_version_field_names_the_field(data: dict[str, Any], message: str) -> None:
    assert version_field(Fields({"version": "v10000"}, "x"), "version") == "v10000"
    with pytest.raises(RegistryError) as info:
        version_field(Fields(data, "x", error=RegistryError), "version")
    assert str(info.value) == message
