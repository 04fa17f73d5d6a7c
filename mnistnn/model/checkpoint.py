"""Checkpoints: weights as `.npz` (never pickle) plus JSON metadata that vouches for them.

A checkpoint of epoch k is two files, `epoch-000k.npz` and `epoch-000k.json`. The JSON is written
after the `.npz` and records the sha256 of its bytes, so a checkpoint is valid only when both
exist and the bytes match: a crash between the two writes, a truncated file or a flipped bit
all read as "no checkpoint here", never as wrong weights. The `.npz` also embeds the
configuration, so a weights file alone rebuilds the model.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mnistnn.config import SCHEMA_VERSION, NetworkConfig
from mnistnn.core.files import sha256_bytes, sha256_file, write_bytes_atomic, write_json_atomic
from mnistnn.core.records import Fields
from mnistnn.errors import CheckpointError
from mnistnn.model.network import NeuralNetwork

log = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.json$")


def weights_bytes(network: NeuralNetwork) -> bytes:
    """The `.npz` bytes of a network: both weight matrices and its configuration as JSON."""
    arrays: dict[str, Any] = {
        "w_input_hidden": network.w_input_hidden,
        "w_hidden_output": network.w_hidden_output,
        "config_json": np.array(json.dumps(network.config.to_dict(), sort_keys=True)),
        "epochs_trained": np.array(network.epochs_trained, dtype=np.int64),
        **network.extra_state(),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_weights(path: str | os.PathLike[str], network: NeuralNetwork) -> str:
    """Write a network's weights atomically; return the sha256 of the bytes written."""
    data = weights_bytes(network)
    write_bytes_atomic(path, data)
    return sha256_bytes(data)


def load_weights(path: str | os.PathLike[str], expected_sha256: str | None = None) -> NeuralNetwork:
    """Rebuild a network from a `.npz` written by `save_weights` (checked against a sha256)."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{source}: weights file not found") from None
    if expected_sha256 is not None:
        _check_sha256(source, expected_sha256, sha256_bytes(data))
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            config = NetworkConfig.from_dict(json.loads(str(archive["config_json"])))
            weights = (archive["w_input_hidden"], archive["w_hidden_output"])
            known = {"w_input_hidden", "w_hidden_output", "config_json", "epochs_trained"}
            extra = {name: archive[name] for name in archive.files if name not in known}
            epochs = int(archive["epochs_trained"]) if "epochs_trained" in archive.files else 0
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{source}: not a readable weights file ({exc})") from exc
    return NeuralNetwork(config, weights, extra_state=extra, epochs_trained=epochs)


def checkpoint_paths(directory: Path, epoch: int) -> tuple[Path, Path]:
    """(weights .npz, metadata .json) paths of epoch `epoch` in `directory`."""
    stem = f"epoch-{epoch:04d}"
    return directory / f"{stem}.npz", directory / f"{stem}.json"


def save_checkpoint(
    directory: str | os.PathLike[str],
    epoch: int,
    network: NeuralNetwork,
    metadata: dict[str, Any],
) -> Path:
    """Write checkpoint `epoch` (weights first, then the JSON that vouches for them)."""
    from mnistnn._version import __version__

    folder = Path(directory)
    weights_path, meta_path = checkpoint_paths(folder, epoch)
    digest = save_weights(weights_path, network)
    record = {
        **metadata,
        "epoch": epoch,
        "config": network.config.to_dict(),
        "weights_file": weights_path.name,
        "weights_sha256": digest,
        "mnistnn_version": __version__,
        "schema_version": SCHEMA_VERSION,
    }
    write_json_atomic(meta_path, record)
    return meta_path


def _check_sha256(source: Path, expected: str, actual: str) -> None:
    """CheckpointError naming `source` when its sha256 is not the one its metadata vouches for."""
    if actual != expected:
        raise CheckpointError(
            f"{source}: sha256 does not match its metadata "
            f"(expected {expected[:12]}…, got {actual[:12]}…)"
        )


def read_metadata(meta_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a checkpoint; CheckpointError naming the file and what is wrong."""
    path = Path(meta_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint metadata not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint metadata ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path}: unreadable checkpoint metadata: not valid JSON ({exc})"
        ) from exc
    fields = Fields(data, path, error=CheckpointError, what="checkpoint metadata (a JSON object)")
    fields.integer("epoch")
    fields.string("weights_sha256")
    fields.optional_string("weights_file")
    return fields.data


def _weights_path(meta_path: Path, record: dict[str, Any]) -> Path:
    """The `.npz` a checkpoint's metadata vouches for (`weights_file`, else the same stem)."""
    return meta_path.with_name(
        str(record.get("weights_file") or meta_path.with_suffix(".npz").name)
    )


def load_checkpoint(meta_path: str | os.PathLike[str]) -> tuple[NeuralNetwork, dict[str, Any]]:
    """Rebuild the network of a checkpoint, verifying its weights' sha256."""
    path = Path(meta_path)
    record = read_metadata(path)
    network = load_weights(_weights_path(path, record), expected_sha256=record["weights_sha256"])
    if network.config.to_dict() != record.get("config"):
        raise CheckpointError(f"{path}: configuration differs from the one inside its weights")
    return network, record


def verify(meta_path: str | os.PathLike[str]) -> None:
    """Check a checkpoint without loading it: CheckpointError naming the one file that failed.

    The metadata must read and the weights' bytes must hash to its `weights_sha256`.
    """
    path = Path(meta_path)
    record = read_metadata(path)
    weights_path = _weights_path(path, record)
    try:
        actual = sha256_file(weights_path)
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: weights file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{weights_path}: unreadable weights file ({exc})") from exc
    _check_sha256(weights_path, record["weights_sha256"], actual)


def is_valid(meta_path: Path) -> bool:
    """True when the checkpoint's metadata reads and its weights' bytes match the sha256."""
    try:
        verify(meta_path)
    except CheckpointError:
        return False
    return True


def latest_valid(directory: str | os.PathLike[str]) -> tuple[int, Path] | None:
    """(epoch, metadata path) of the highest valid checkpoint in `directory`, or None.

    Invalid checkpoints are skipped with a warning naming them; they are never used.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        match = _EPOCH_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    for epoch, path in sorted(found, reverse=True):
        try:
            verify(path)
        except CheckpointError as exc:
            log.warning("ignoring invalid checkpoint of epoch %d: %s", epoch, exc)
            continue
        return epoch, path
    return None
