"""Helpers shared by the batch-scoring tests: small trained networks, inbox writers, a registry."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mnistnn.config import NetworkConfig
from mnistnn.model.network import NeuralNetwork
from mnistnn.registry.store import ModelRegistry

HEADER = ",".join(f"pixel{i}" for i in range(784))


def trained(
    pixels: np.ndarray, labels: np.ndarray, hidden: int = 20, seed: int = 0
) -> NeuralNetwork:
    """A network trained one epoch on the given rows (seconds, good enough to disagree a bit)."""
    network = NeuralNetwork(NetworkConfig(hidden_nodes=hidden, seed=seed))
    network.train_epoch(pixels, labels)
    return network


def pixel_lines(pixels: np.ndarray) -> list[str]:
    return [",".join(map(str, row)) for row in pixels.astype(np.int64)]


def write_pixel_csv(path: Path, pixels: np.ndarray, *, header: bool = True) -> Path:
    """A Kaggle-style unlabelled CSV (gzip when the name ends in .gz)."""
    text = "\n".join(([HEADER] if header else []) + pixel_lines(pixels)) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_pixel_parquet(path: Path, pixels: np.ndarray) -> Path:
    table = pa.table({f"pixel{i}": pixels[:, i] for i in range(784)})
    pq.write_table(table, path)
    return path


def write_images(folder: Path, pixels: np.ndarray, corrupt: bool = True) -> list[Path]:
    """One PNG per row (d0.png, d1.png, ...), plus a corrupt `broken.png` when asked."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, row in enumerate(pixels):
        path = folder / f"d{index}.png"
        Image.fromarray(row.reshape(28, 28).astype(np.uint8)).save(path)
        paths.append(path)
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return paths


def register(models_dir: Path, network: NeuralNetwork, accuracy: float) -> str:
    """Register `network` with a made-up accuracy; returns its version."""
    decision = ModelRegistry(models_dir).register(
        network, metrics={"accuracy": accuracy}, test_sha256="t" * 64, train_sha256="s" * 64
    )
    return decision.version
