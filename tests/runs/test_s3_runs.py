"""Run folders, checkpoints and the run lease on object storage (a real SeaweedFS server)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mnistnn import MnistnnError, NetworkConfig, NeuralNetwork
from mnistnn.core import locations
from mnistnn.data.ingest import ingest_csv
from mnistnn.errors import ConfigError, StorageUnavailable
from mnistnn.model import checkpoint
from mnistnn.runs import folders
from mnistnn.runs import steps as training
from mnistnn.runs.folders import RunFolder, open_run, run_folder, run_lock
from tests.seaweed import SeaweedServer

CONFIG = NetworkConfig(hidden_nodes=16)


def test_checkpoints_on_both_backends(store_url: str) -> None:
    directory = locations.join(store_url, "ck")
    network = NeuralNetwork(NetworkConfig(hidden_nodes=4, seed=3))
    meta = checkpoint.save_checkpoint(directory, 1, network, {"note": "x"})
    assert isinstance(meta, Path) == ("://" not in store_url)
    loaded, record = checkpoint.load_checkpoint(meta)
    np.testing.assert_array_equal(loaded.w_input_hidden, network.w_input_hidden)
    assert record["weights_file"] == "epoch-0001.npz"
    checkpoint.save_checkpoint(directory, 2, network, {})
    assert checkpoint.latest_valid(directory) == (2, checkpoint.checkpoint_paths(directory, 2)[1])
    # a flipped weights object, and weights without the JSON that vouches for them
    weights2, _ = checkpoint.checkpoint_paths(directory, 2)
    locations.write_bytes(weights2, locations.read_bytes(weights2)[:-1] + b"!")
    locations.write_bytes(checkpoint.checkpoint_paths(directory, 3)[0], b"orphan")
    assert checkpoint.latest_valid(directory) == (1, meta)
    assert checkpoint.latest_valid(locations.join(store_url, "nothing-here")) is None


@pytest.fixture
def s3_run(tmp_path: Path, small_csvs: tuple[Path, Path], s3_url: str):
    train = ingest_csv(small_csvs[0], tmp_path / "processed")
    test = ingest_csv(small_csvs[1], tmp_path / "processed")
    for local in (train.parquet, test.parquet):  # the inputs live in the bucket too
        locations.write_bytes(f"{s3_url}/processed/{Path(local).name}", Path(local).read_bytes())
    folder = run_folder(f"{s3_url}/runs", CONFIG, train.sha256, test.sha256)
    open_run(folder, CONFIG, train.sha256, test.sha256)
    return (
        folder,
        f"{s3_url}/processed/{Path(train.parquet).name}",
        f"{s3_url}/processed/{Path(test.parquet).name}",
    )


def test_run_on_s3_resumes_and_equals_uninterrupted_training(s3_run) -> None:
    folder, train_url, test_url = s3_run
    assert isinstance(folder.path, str) and folder.path.startswith("s3://")
    for epoch in (1, 2):
        training.train_epoch(folder, epoch, CONFIG, train_url)
        training.evaluate_epoch(folder, epoch, test_url)
    # a second process (another machine) finds the bucket's checkpoint and continues
    again = RunFolder(str(folder.path))
    assert training.resume_point(again) == 2
    assert training.train_epoch(again, 2, CONFIG, train_url).reused
    training.train_epoch(again, 3, CONFIG, train_url)
    training.evaluate_epoch(again, 3, test_url)
    assert training.prune_checkpoints(again, 3, keep=1)
    metrics = training.finish_run(again, 3)
    assert [m.epoch for m in metrics] == [1, 2, 3]
    pixels, labels = training.load_arrays(train_url)
    direct = NeuralNetwork(CONFIG)
    for _ in range(3):
        direct.train_epoch(pixels, labels)
    final = checkpoint.load_weights(folder.weights)
    np.testing.assert_array_equal(final.w_input_hidden, direct.w_input_hidden)
    np.testing.assert_array_equal(final.w_hidden_output, direct.w_hidden_output)
    assert training.recorded_epochs(again) == 3
    open_run(again, CONFIG, "a" * 64, "b" * 64, fresh=True)
    assert training.recorded_epochs(again) == 0


def test_run_lease_makes_a_second_machine_wait_and_times_out(s3_run) -> None:
    folder = s3_run[0]
    held, released = threading.Event(), threading.Event()

    def holder() -> None:
        with run_lock(RunFolder(str(folder.path))):
            held.set()
            released.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    timed_out = pytest.raises(MnistnnError, match=r"\.lease: timed out .*held by .*:\d+:")
    with timed_out, run_lock(folder, timeout=0.5):
        pass
    released.set()
    thread.join()
    started = time.monotonic()
    with run_lock(folder, timeout=5):
        assert time.monotonic() - started < 5


def test_stale_lease_of_a_killed_worker_is_taken_over_and_logged(
    s3_run, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = s3_run[0]
    store = locations.store_at(folder.path)
    stale = b'{"owner": "dead:1:-", "host": "dead", "pid": 1, "expires_at": 1.0}'
    assert store.create(".lease", stale)  # what a SIGKILLed worker leaves behind
    monkeypatch.setattr(folders, "LEASE_TTL", 3.0)
    with caplog.at_level(logging.WARNING), run_lock(folder, timeout=5):
        pass
    assert "taking over stale lease" in caplog.text and "dead:1:-" in caplog.text


def test_lease_ttl_comes_from_the_environment(s3_run, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = s3_run[0]
    store = locations.store_at(folder.path)
    monkeypatch.setenv("MNISTNN_LEASE_TTL", "7.5")
    with run_lock(folder, timeout=5):
        record = json.loads(store.read_bytes(".lease"))
    assert record["expires_at"] - record["acquired_at"] == pytest.approx(7.5)
    for bad in ("soon", "0", "-3", "nan", "inf"):
        monkeypatch.setenv("MNISTNN_LEASE_TTL", bad)
        with pytest.raises(ConfigError, match=rf"^MNISTNN_LEASE_TTL: .*positive.*'{bad}'"):
            folders.lease_ttl()
    monkeypatch.setenv("MNISTNN_LEASE_TTL", " ")
    assert folders.lease_ttl() == folders.LEASE_TTL


def test_unreachable_store_is_transient_not_missing(
    s3_run, seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = s3_run[0]
    training.train_epoch(folder, 1, CONFIG, s3_run[1])
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    moved = RunFolder(str(folder.path))
    with pytest.raises(StorageUnavailable, match=r"cannot reach the S3 endpoint"):
        training.resume_point(moved)
