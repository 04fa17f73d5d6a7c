"""kill -9 mid-training, run the same command again: it resumes and ends bit-identical."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.model.checkpoint import weights_bytes
from tests.e2e.conftest import REPO, PrefectServer
from tests.e2e.processes import train_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 6
HIDDEN = 40


def test_sigkill_mid_training_then_resume(
    prefect_server: PrefectServer, mnist_train, train_10k_csv: Path, small_csvs, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    command = train_command(
        data_dir, train_10k_csv, small_csvs[1], "--epochs", str(EPOCHS), "--hidden", str(HIDDEN)
    )
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=prefect_server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        checkpoints = data_dir / "runs" / "*" / "checkpoints" / "epoch-0002.json"
        deadline = time.monotonic() + 180
        while not (found := list(data_dir.glob(str(checkpoints.relative_to(data_dir))))):
            assert process.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 180 s"
            time.sleep(0.01)
        run_dir = found[0].parents[1]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"

    resumed = prefect_server.run(*command, timeout=300)
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    trained = result["trained_epochs"]
    assert trained, "nothing was retrained"
    assert trained == list(range(trained[0], EPOCHS + 1))
    assert trained[0] >= 3, f"resumed from scratch or too early: {trained}"

    uninterrupted = NeuralNetwork(NetworkConfig(hidden_nodes=HIDDEN))
    for _ in range(EPOCHS):
        uninterrupted.train_epoch(mnist_train[0][:10_000], mnist_train[1][:10_000])
    final = (Path(result["run_dir"]) / "weights.npz").read_bytes()
    assert (
        hashlib.sha256(final).hexdigest()
        == hashlib.sha256(weights_bytes(uninterrupted)).hexdigest()
    )
