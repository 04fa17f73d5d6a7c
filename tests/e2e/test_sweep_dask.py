"""Sweeps on Dask against a real Prefect server: a local cluster of 2 worker processes, an
existing cluster, and an existing cluster of 2 workers with the data on S3."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.core import locations
from mnistnn.core.files import sha256_bytes
from mnistnn.data.fast_csv import read_csv
from mnistnn.data.ingest import ingest_csv
from mnistnn.model.checkpoint import load_weights
from mnistnn.runs.sweep import train_configuration
from tests.e2e.conftest import BIN, PrefectServer
from tests.e2e.processes import dask_cluster
from tests.seaweed import SeaweedServer

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


def test_sweep_on_s3_with_a_separate_scheduler_and_two_workers(
    prefect_server: PrefectServer, s3_env: SeaweedServer, s3_url: str, small_csvs, tmp_path: Path
) -> None:
    """Workers that share no disk with the client: inputs, runs and report all in the bucket."""
    env = {k: v for k, v in prefect_server.env.items() if not k.startswith("AWS_")}
    env.update((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))  # s3_env's only
    server = dataclasses.replace(prefect_server, env=env)
    data_dir = f"{s3_url}/data"
    with dask_cluster(server.env, workers=2) as address:
        command = [
            *(str(BIN / "mnistnn"), "--data-dir", data_dir, "sweep"),
            *("--hidden", "10,16", "--lr", "0.1", "--epochs", "1"),
            *("--dask-address", address, "--json"),
            *("--train-csv", str(small_csvs[0]), "--test-csv", str(small_csvs[1])),
        ]
        result = json.loads(server.run(*command, timeout=300).stdout.strip().splitlines()[-1])
    assert result["report"] == f"{data_dir}/runs/sweep-report.md"
    assert locations.read_bytes(result["report"]).startswith(b"#")
    train, test = (ingest_csv(csv, tmp_path / "processed") for csv in small_csvs)
    swept = {}
    for point in result["points"]:
        assert point["run_dir"].startswith(f"{data_dir}/runs/"), point
        weights = locations.read_bytes(f"{point['run_dir']}/weights.npz")
        swept[point["hidden_nodes"]] = sha256_bytes(weights)
    alone = {}
    for hidden in (10, 16):  # the same configurations, each trained alone on this machine
        config = NetworkConfig(hidden_nodes=hidden, learning_rate=0.1)
        metrics = train_configuration(
            config, 1, tmp_path / "runs", train.parquet, test.parquet, train.sha256, test.sha256
        )
        alone[hidden] = sha256_bytes((Path(metrics[-1]["run_dir"]) / "weights.npz").read_bytes())
    assert swept == alone
