"""A 2x2 sweep on a local Dask cluster of 2 worker processes against a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data.fast_csv import read_csv
from mnistnn.model.checkpoint import load_weights
from tests.e2e.conftest import BIN, PrefectServer
from tests.e2e.processes import dask_cluster

pytestmark = pytest.mark.e2e


def test_sweep_on_dask_processes(prefect_server: PrefectServer, small_csvs, tmp_path: Path) -> None:
    command = [
        str(BIN / "mnistnn"),
        "--data-dir",
        str(tmp_path),
        "sweep",
        "--hidden",
        "10,20",
        "--lr",
        "0.05,0.2",
        "--epochs",
        "2",
        "--workers",
        "2",
        "--train-csv",
        str(small_csvs[0]),
        "--test-csv",
        str(small_csvs[1]),
        "--json",
    ]
    result = json.loads(prefect_server.run(*command, timeout=600).stdout.strip().splitlines()[-1])
    assert len(result["points"]) == 4
    pixels, labels = read_csv(small_csvs[0])
    for point in result["points"]:
        alone = NeuralNetwork(
            NetworkConfig(hidden_nodes=point["hidden_nodes"], learning_rate=point["learning_rate"])
        )
        for _ in range(2):
            alone.train_epoch(pixels, labels)
        swept = load_weights(Path(point["run_dir"]) / "weights.npz")
        np.testing.assert_array_equal(swept.w_input_hidden, alone.w_input_hidden)
        np.testing.assert_array_equal(swept.w_hidden_output, alone.w_hidden_output)

    script = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey\n"
        "async def main():\n"
        "    async with get_client() as client:\n"
        "        found = {}\n"
        "        for key in ('mnist-sweep-results', 'mnist-sweep-report'):\n"
        "            keys = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))\n"
        "            found[key] = len(await client.read_artifacts(artifact_filter=keys))\n"
        "        runs = await client.read_task_runs()\n"
        "        found['configs'] = sum(1 for r in runs if r.name.startswith('train hidden'))\n"
        "        print(json.dumps(found))\n"
        "asyncio.run(main())\n"
    )
    found = json.loads(prefect_server.run(str(BIN / "python"), "-c", script).stdout)
    assert found["mnist-sweep-results"] >= 1
    assert found["mnist-sweep-report"] >= 1
    assert found["configs"] >= 4


def test_sweep_on_an_existing_dask_cluster(
    prefect_server: PrefectServer, small_csvs, tmp_path: Path
) -> None:
    """`--dask-address` sends the configurations to a cluster started elsewhere."""
    with dask_cluster(prefect_server.env) as address:
        command = [
            str(BIN / "mnistnn"),
            "--data-dir",
            str(tmp_path),
            "sweep",
            "--hidden",
            "12",
            "--lr",
            "0.05,0.1",
            "--epochs",
            "1",
            "--dask-address",
            address,
            "--train-csv",
            str(small_csvs[0]),
            "--test-csv",
            str(small_csvs[1]),
            "--json",
        ]
        output = prefect_server.run(*command, timeout=300).stdout
        result = json.loads(output.strip().splitlines()[-1])
        assert sorted(p["learning_rate"] for p in result["points"]) == [0.05, 0.1]
