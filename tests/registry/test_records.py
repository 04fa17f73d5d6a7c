"""The registry's records: decisions round-trip, corrupt registry.json and meta.json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mnistnn.errors import RegistryError
from mnistnn.registry.records import PromotionDecision
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
    registry.registry_path.write_text(content, encoding="utf-8")
    with pytest.raises(RegistryError, match=message) as info:
        registry.versions()
    assert str(registry.registry_path) in str(info.value)


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
    path = registry.root / "v0001" / "meta.json"
    path.write_text(edit(json.loads(path.read_text(encoding="utf-8"))), encoding="utf-8")
    with pytest.raises(RegistryError, match=message) as info:
        registry.get("v0001")
    assert str(path) in str(info.value)
