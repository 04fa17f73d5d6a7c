"""Checkpoints round-trip bit for bit, and a damaged one is never used."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnistnn import CheckpointError, NetworkConfig, NeuralNetwork
from mnistnn.model import checkpoint as ckpt


def _net(seed: int = 0) -> NeuralNetwork:
    return NeuralNetwork(NetworkConfig(hidden_nodes=5, seed=seed, dtype="float32"))


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    net = _net()
    meta = ckpt.save_checkpoint(tmp_path, 3, net, {"train_seconds": 1.5})
    loaded, record = ckpt.load_checkpoint(meta)
    assert loaded.config == net.config
    assert loaded.w_input_hidden.dtype == np.float32
    np.testing.assert_array_equal(loaded.w_input_hidden, net.w_input_hidden)
    np.testing.assert_array_equal(loaded.w_hidden_output, net.w_hidden_output)
    assert record["epoch"] == 3 and record["train_seconds"] == 1.5
    assert record["config"] == net.config.to_dict()


def test_npz_holds_no_pickle_and_rebuilds_the_model_alone(tmp_path: Path) -> None:
    net = _net()
    ckpt.save_weights(tmp_path / "w.npz", net)
    with np.load(tmp_path / "w.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == [
            "config_json",
            "epochs_trained",
            "w_hidden_output",
            "w_input_hidden",
        ]
    assert ckpt.load_weights(tmp_path / "w.npz").config == net.config


def test_corrupted_weights_are_detected_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt.save_checkpoint(tmp_path, 1, _net(1), {})
    ckpt.save_checkpoint(tmp_path, 2, _net(2), {})
    weights, meta = ckpt.checkpoint_paths(tmp_path, 2)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="epoch-0002.npz: sha256 does not match"):
        ckpt.load_checkpoint(meta)
    with caplog.at_level(logging.WARNING):
        assert ckpt.latest_valid(tmp_path) == (1, tmp_path / "epoch-0001.json")
    # the warning names the file that failed (the .npz, not its metadata) and the one reason
    assert "ignoring invalid checkpoint" in caplog.text and "epoch-0002.npz" in caplog.text
    assert "epoch-0002.npz: sha256 does not match its metadata (expected " in caplog.text
    assert "unreadable or sha256 mismatch" not in caplog.text


def _warning_about_epoch_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> str:
    """The one warning `latest_valid` logs when checkpoint 2 is bad and checkpoint 1 is good."""
    with caplog.at_level(logging.WARNING, logger="mnistnn.model.checkpoint"):
        assert ckpt.latest_valid(tmp_path) == (1, tmp_path / "epoch-0001.json")
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    return record.getMessage()


@pytest.mark.parametrize(
    "damage, reason",
    [
        pytest.param(
            lambda npz, meta: npz.write_bytes(npz.read_bytes()[:-10]),
            r"epoch-0002\.npz: sha256 does not match its metadata "
            r"\(expected [0-9a-f]{12}…, got [0-9a-f]{12}…\)$",
            id="npz-truncated",
        ),
        pytest.param(
            lambda npz, meta: npz.unlink(),
            r"epoch-0002\.npz: weights file not found$",
            id="npz-missing",
        ),
        pytest.param(
            lambda npz, meta: meta.write_text("{not json"),
            r"epoch-0002\.json: unreadable checkpoint metadata: not valid JSON \(.+\)$",
            id="json-not-json",
        ),
        pytest.param(
            lambda npz, meta: meta.write_text('{"epoch": 2}'),
            r"epoch-0002\.json: field 'weights_sha256' is missing$",
            id="json-field-missing",
        ),
    ],
)
def test_invalid_checkpoint_warning_names_the_failed_file_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, reason: str
) -> None:
    ckpt.save_checkpoint(tmp_path, 1, _net(1), {})
    ckpt.save_checkpoint(tmp_path, 2, _net(2), {})
    weights, meta = ckpt.checkpoint_paths(tmp_path, 2)
    damage(weights, meta)
    message = _warning_about_epoch_2(tmp_path, caplog)
    assert message.startswith("ignoring invalid checkpoint of epoch 2: ")
    assert re.search(reason, message), message
    assert "unreadable or sha256 mismatch" not in message
    other = "epoch-0002.json" if ".npz:" in reason else "epoch-0002.npz"
    assert other not in message  # only the file that failed is named


def test_weights_without_metadata_do_not_count(tmp_path: Path) -> None:
    """A crash between the .npz and the .json leaves no checkpoint, not a half one."""
    ckpt.save_checkpoint(tmp_path, 1, _net(), {})
    ckpt.save_weights(tmp_path / "epoch-0002.npz", _net(2))
    assert ckpt.latest_valid(tmp_path) == (1, tmp_path / "epoch-0001.json")
    assert ckpt.latest_valid(tmp_path / "missing") is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "unreadable checkpoint metadata"),
        ('{"epoch": 1}', "field 'weights_sha256' is missing"),
        ('{"epoch": "1", "weights_sha256": "ab"}', "field 'epoch' must be an integer >= 0"),
        ('{"epoch": 1, "weights_sha256": 12}', "field 'weights_sha256' must be a string"),
        ("[1, 2]", "expected checkpoint metadata \\(a JSON object\\), got list"),
    ],
)
def test_bad_metadata_messages(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "epoch-0001.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=message) as info:
        ckpt.load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not ckpt.is_valid(path)


def test_missing_and_unreadable_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="weights file not found"):
        ckpt.load_weights(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.npz: not a readable weights file"):
        ckpt.load_weights(tmp_path / "junk.npz")


def test_config_mismatch_between_json_and_npz(tmp_path: Path) -> None:
    meta = ckpt.save_checkpoint(tmp_path, 1, _net(), {})
    record = json.loads(meta.read_text())
    record["config"]["hidden_nodes"] = 6
    meta.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="configuration differs"):
        ckpt.load_checkpoint(meta)
