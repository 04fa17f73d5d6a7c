"""Checkpoints: weights as `.npz` (never pickle) plus JSON metadata that vouches for them.

A checkpoint of epoch k is two files, `epoch-000k.npz` and `epoch-000k.json`. The JSON is written
after the `.npz` and records the sha256 of its bytes, so a checkpoint is valid only when both
exist and the bytes match: a crash between the two writes, a truncated file or a flipped bit
all read as "no checkpoint here", never as wrong weights. The `.npz` also embeds the
configuration, so a weights file alone rebuilds the model.

Every location may be a local path or an `s3://` URL (see `mnistnn.core.locations`): each write
is one whole object (a temp file + rename locally, one PUT on S3), so the order "weights, then
the JSON that vouches for their sha256" is the commit protocol on both.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from typing import Any

import numpy as np

from mnistnn.config import SCHEMA_VERSION, NetworkConfig
from mnistnn.core import locations
from mnistnn.core.files import sha256_bytes
from mnistnn.core.locations import Location
from mnistnn.core.records import Fields
from mnistnn.errors import CheckpointError, NotFound, StorageUnavailable
from mnistnn.model.network import NeuralNetwork

log = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})(\.json|\.npz)$")


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
    locations.write_bytes(path, data)
    return sha256_bytes(data)


def load_weights(path: str | os.PathLike[str], expected_sha256: str | None = None) -> NeuralNetwork:
    """Rebuild a network from a `.npz` written by `save_weights` (checked against a sha256)."""
    source = locations.as_location(path)
    try:
        data = locations.read_bytes(source)
    except (NotFound, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CheckpointError(f"{source}: weights file not found") from None
    return weights_from_bytes(data, source, expected_sha256)


def weights_from_bytes(
    data: bytes, source: str | os.PathLike[str], expected_sha256: str | None = None
) -> NeuralNetwork:
    """Rebuild a network from `.npz` bytes read from `source` (a path or URL, for messages)."""
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


def checkpoint_paths(directory: str | os.PathLike[str], epoch: int) -> tuple[Location, Location]:
    """(weights .npz, metadata .json) locations of epoch `epoch` in `directory`."""
    stem = f"epoch-{epoch:04d}"
    return locations.join(directory, f"{stem}.npz"), locations.join(directory, f"{stem}.json")


def save_checkpoint(
    directory: str | os.PathLike[str],
    epoch: int,
    network: NeuralNetwork,
    metadata: dict[str, Any],
) -> Location:
    """Write checkpoint `epoch` (weights first, then the JSON that vouches for them)."""
    from mnistnn._version import __version__

    weights_path, meta_path = checkpoint_paths(directory, epoch)
    digest = save_weights(weights_path, network)
    record = {
        **metadata,
        "epoch": epoch,
        "config": network.config.to_dict(),
        "weights_file": locations.name(weights_path),
        "weights_sha256": digest,
        "mnistnn_version": __version__,
        "schema_version": SCHEMA_VERSION,
    }
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    locations.write_bytes(meta_path, text.encode("utf-8"))
    return meta_path


def _check_sha256(source: str | os.PathLike[str], expected: str, actual: str) -> None:
    """CheckpointError naming `source` when its sha256 is not the one its metadata vouches for."""
    if actual != expected:
        raise CheckpointError(
            f"{source}: sha256 does not match its metadata "
            f"(expected {expected[:12]}…, got {actual[:12]}…)"
        )


def read_metadata(meta_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a checkpoint; CheckpointError naming the file and what is wrong."""
    path = locations.as_location(meta_path)
    try:
        text = locations.read_bytes(path).decode("utf-8")
    except (NotFound, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CheckpointError(f"{path}: checkpoint metadata not found") from None
    except StorageUnavailable:
        raise  # transient: the task is retried, the checkpoint is not declared missing
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


def _weights_path(meta_path: Location, record: dict[str, Any]) -> Location:
    """The `.npz` a checkpoint's metadata vouches for (`weights_file`, else the same stem)."""
    default = locations.name(meta_path).removesuffix(".json") + ".npz"
    name = str(record.get("weights_file") or default)
    if "/" in name or name in ("", ".", ".."):
        raise CheckpointError(f"{meta_path}: weights_file {name!r} is not a file name")
    return locations.join(locations.parent(meta_path), name)


def load_checkpoint(meta_path: str | os.PathLike[str]) -> tuple[NeuralNetwork, dict[str, Any]]:
    """Rebuild the network of a checkpoint, verifying its weights' sha256."""
    path = locations.as_location(meta_path)
    record = read_metadata(path)
    network = load_weights(_weights_path(path, record), expected_sha256=record["weights_sha256"])
    if network.config.to_dict() != record.get("config"):
        raise CheckpointError(f"{path}: configuration differs from the one inside its weights")
    return network, record


def verify(meta_path: str | os.PathLike[str]) -> None:
    """Check a checkpoint without loading it: CheckpointError naming the one file that failed.

    The metadata must read and the weights' bytes must hash to its `weights_sha256`. Transient
    storage errors (StorageUnavailable, an OSError) are raised, not read as "invalid": an
    unreachable store must fail the task (and be retried), never restart training.
    """
    path = locations.as_location(meta_path)
    record = read_metadata(path)
    weights_path = _weights_path(path, record)
    try:
        actual = sha256_bytes(locations.read_bytes(weights_path))
    except (NotFound, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CheckpointError(f"{weights_path}: weights file not found") from None
    except StorageUnavailable:
        raise
    except OSError as exc:
        raise CheckpointError(f"{weights_path}: unreadable weights file ({exc})") from exc
    _check_sha256(weights_path, record["weights_sha256"], actual)


def is_valid(meta_path: str | os.PathLike[str]) -> bool:
    """True when the checkpoint's metadata reads and its weights' bytes match the sha256."""
    try:
        verify(meta_path)
    except CheckpointError:
        return False
    return True


def recorded(directory: str | os.PathLike[str], suffix: str = ".json") -> list[int]:
    """The epochs with an `epoch-NNNN<suffix>` file in `directory` (valid or not; `.json`: the
    metadata, `.npz`: the weights), in no particular order, from one listing."""
    matches = (_EPOCH_FILE.match(name) for name in locations.names_in(directory))
    return [int(match[1]) for match in matches if match and match[2] == suffix]


def latest_valid(directory: str | os.PathLike[str]) -> tuple[int, Location] | None:
    """(epoch, metadata path) of the highest valid checkpoint in `directory`, or None.

    Invalid checkpoints are skipped with a warning naming them; they are never used.
    """
    for epoch in sorted(recorded(directory), reverse=True):
        _, path = checkpoint_paths(directory, epoch)
        try:
            verify(path)
        except CheckpointError as exc:
            log.warning("ignoring invalid checkpoint of epoch %d: %s", epoch, exc)
            continue
        return epoch, path
    return None
