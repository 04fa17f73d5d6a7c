"""resolve_model: a version, a weights .npz or a checkpoint .json to a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistnn.errors import RegistryError
from mnistnn.model.checkpoint import save_checkpoint, save_weights
from mnistnn.registry.resolve import resolve_model
from mnistnn.registry.store import ModelRegistry
from tests.registry.conftest import register, same_weights, tiny


def test_resolve_model_variants(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, 1, 0.9)
    register(registry, 2, 0.8)
    assert same_weights(resolve_model(None, registry.root), tiny(1))
    assert same_weights(resolve_model("v0002", registry.root), tiny(2))
    weights = tmp_path / "loose.npz"
    save_weights(weights, tiny(3))
    assert same_weights(resolve_model(str(weights), registry.root), tiny(3))
    meta = save_checkpoint(tmp_path / "ckpt", 1, tiny(4), {"note": "test"})
    assert same_weights(resolve_model(str(meta), registry.root), tiny(4))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.npz", "no such file"),
        ("latest", "no such file"),
        ("notes.txt", "not a .npz or checkpoint .json file"),
        ("v0009", "unknown version v0009"),
    ],
)
def test_resolve_model_errors(
    registry: ModelRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    message: str,
) -> None:
    register(registry, 1, 0.9)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(RegistryError, match=message):
        resolve_model(spec, registry.root)


def test_resolve_model_with_empty_registry(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no model trained yet"):
        resolve_model(None, tmp_path / "models")
