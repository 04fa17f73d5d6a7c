"""kill -9 mid-training, run the same command again: it resumes and ends bit-identical.

Twice: on the base file alone, and on a snapshot that also holds two inbox batches, where the
uninterrupted run is a real `mnistnn train` in another data dir (the snapshot must come out the
same there: content-addressed, not by data dir or time).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.model.checkpoint import weights_bytes
from tests.conftest import write_mnist_csv
from tests.e2e.conftest import PrefectServer
from tests.e2e.processes import spawn, stop, train_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 6
HIDDEN = 40
#: Two small batches of the bundled training rows (the base file's own, so nothing drifts).
BATCHES = {"batch-a.csv": slice(0, 300), "batch-b.csv": slice(300, 500)}


def kill_command(data_dir: Path, train_csv: Path, test_csv: Path, *extra: str) -> list[str]:
    return train_command(
        data_dir, train_csv, test_csv, "--epochs", str(EPOCHS), "--hidden", str(HIDDEN), *extra
    )


def write_inbox(folder: Path, mnist_train: tuple[np.ndarray, np.ndarray]) -> Path:
    """The BATCHES as settled inbox files (modified a minute ago: the flow reads them at once)."""
    folder.mkdir()
    past = time.time() - 60
    for name, rows in BATCHES.items():
        path = write_mnist_csv(folder / name, mnist_train[0][rows], mnist_train[1][rows])
        os.utime(path, (past, past))
    return folder


def weights_sha256(result: dict[str, Any]) -> str:
    return hashlib.sha256((Path(result["run_dir"]) / "weights.npz").read_bytes()).hexdigest()


@pytest.mark.parametrize("with_batches", [False, True], ids=["base-file", "inbox-batches"])
def test_sigkill_mid_training_then_resume(
    prefect_server: PrefectServer,
    mnist_train,
    train_10k_csv: Path,
    small_csvs,
    tmp_path: Path,
    with_batches: bool,
) -> None:
    data_dir = tmp_path / "data"
    # one inbox for both data dirs: the same bytes, and the pipeline never changes an inbox
    extra = []
    if with_batches:
        extra = ["--incoming", str(write_inbox(tmp_path / "incoming", mnist_train))]
    command = kill_command(data_dir, train_10k_csv, small_csvs[1], *extra)
    # the uninterrupted run on the same snapshot runs beside the killed one (it saves wall time);
    # its output goes to files, so a full pipe never holds it up
    out, err = tmp_path / "reference.out", tmp_path / "reference.err"
    reference = None
    if with_batches:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            reference = spawn(
                kill_command(tmp_path / "reference", train_10k_csv, small_csvs[1], *extra),
                prefect_server.env,
                stdout=stdout,
                stderr=stderr,
            )
    try:
        process = spawn(command, prefect_server.env)
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

        if reference is None:
            uninterrupted = NeuralNetwork(NetworkConfig(hidden_nodes=HIDDEN))
            for _ in range(EPOCHS):
                uninterrupted.train_epoch(mnist_train[0][:10_000], mnist_train[1][:10_000])
            expected = hashlib.sha256(weights_bytes(uninterrupted)).hexdigest()
        else:
            reference.wait(timeout=300)
            assert reference.returncode == 0, f"the uninterrupted run failed:\n{err.read_text()}"
            clean = json.loads(out.read_text().strip().splitlines()[-1])
            assert clean["trained_epochs"] == list(range(1, EPOCHS + 1))
            assert result["snapshot"]["sha256"] == clean["snapshot"]["sha256"]
            batches = result["snapshot"]["batches"]
            # snapshot order is first seen, then sha256: not the names' order
            assert sorted((b["file"], b["status"], b["accepted"]) for b in batches) == [
                (name, "accepted", rows.stop - rows.start) for name, rows in BATCHES.items()
            ]
            # the lineage of the resumed run's last epoch names the snapshot and both batches
            final = Path(result["run_dir"]) / "checkpoints" / f"epoch-{EPOCHS:04d}.json"
            lineage = json.loads(final.read_text())["lineage"]
            assert lineage["train"]["sha256"] == clean["snapshot"]["sha256"]
            assert sorted(b["file"] for b in lineage["snapshot"]["batches"]) == sorted(BATCHES)
            expected = weights_sha256(clean)
        assert weights_sha256(result) == expected
    finally:
        if reference is not None:
            stop(reference, signal.SIGKILL)
