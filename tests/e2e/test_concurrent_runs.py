"""Two `mnistnn train` processes at once: the same configuration waits and reuses, another
configuration trains beside it, and nothing in either run folder is corrupted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mnistnn.model import checkpoint
from tests.e2e.conftest import REPO, PrefectServer
from tests.e2e.processes import train_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start(server: PrefectServer, data_dir: Path, small_csvs, hidden: int) -> subprocess.Popen[str]:
    command = train_command(
        data_dir, small_csvs[0], small_csvs[1], "--epochs", "4", "--hidden", str(hidden)
    )
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_same_and_different_configurations_at_once(
    prefect_server: PrefectServer, small_csvs, tmp_path: Path
) -> None:
    processes = [start(prefect_server, tmp_path, small_csvs, hidden) for hidden in (30, 30, 31)]
    first, second, other = (finish(process) for process in processes)
    assert first["run_dir"] == second["run_dir"] != other["run_dir"]
    # one of the two identical runs trained every epoch, the other waited and trained none
    assert sorted([first["trained_epochs"], second["trained_epochs"]]) == [[], [1, 2, 3, 4]]
    assert first["metrics"] == second["metrics"]
    assert other["trained_epochs"] == [1, 2, 3, 4]
    for result in (first, other):
        folder = Path(result["run_dir"]) / "checkpoints"
        for epoch in range(1, 5):
            _, meta = checkpoint.checkpoint_paths(folder, epoch)
            assert meta.exists()
        assert checkpoint.latest_valid(folder) == (4, folder / "epoch-0004.json")
        assert not list(Path(result["run_dir"]).rglob(".tmp-*"))
