"""What a user means by `--model`: a registered version, a weights .npz or a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from mnistnn.errors import RegistryError
from mnistnn.model.checkpoint import load_checkpoint, load_weights
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.records import VERSION_NAME
from mnistnn.registry.store import ModelRegistry


def resolve_model(
    spec: str | os.PathLike[str] | None, models_root: str | os.PathLike[str]
) -> NeuralNetwork:
    """The network a user means by `spec`, for CLI options such as `--model`.

    None: the registry's champion; `vNNNN`: that registered version; a path to a `.npz`: those
    weights; a path to a checkpoint `.json`: that checkpoint (its weights' sha256 verified).
    """
    if spec is None:
        return ModelRegistry(models_root).load()
    text = os.fspath(spec)
    if VERSION_NAME.match(text):
        return ModelRegistry(models_root).load(text)
    path = Path(text)
    if path.is_file() and path.suffix == ".npz":
        return load_weights(path)
    if path.is_file() and path.suffix == ".json":
        return load_checkpoint(path)[0]
    problem = "no such file" if not path.exists() else "not a .npz or checkpoint .json file"
    raise RegistryError(
        f"cannot resolve model {text!r} ({problem}): give a registered version such as v0001, "
        "a weights .npz file or a checkpoint .json file"
    )
