"""The mnist-training flow with `data_dir=s3://...` (inputs in the bucket too), on SeaweedFS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flows import training as flow_module
from mnistnn.core import locations
from mnistnn.model.checkpoint import load_weights
from mnistnn.registry.store import ModelRegistry
from tests.conftest import write_mnist_csv
from tests.flows.test_training import HIDDEN, direct_weights

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_flow_on_s3_matches_the_library_and_registers(
    small_csvs: tuple[Path, Path], s3_url: str, tmp_path: Path
) -> None:
    inputs = []
    for csv in small_csvs:
        url = f"{s3_url}/inputs/{csv.name}"
        locations.write_bytes(url, csv.read_bytes())
        inputs.append(url)
    data_dir = f"{s3_url}/data"
    params = {
        "train_csv": inputs[0],
        "test_csv": inputs[1],
        "hidden_nodes": HIDDEN,
        "epochs": 2,
        "data_dir": data_dir,
        "publish_report": True,
    }
    result = flow_module.train_pipeline(**params).to_dict()
    assert result["run_dir"].startswith(f"{data_dir}/runs/")
    final = load_weights(f"{result['run_dir']}/weights.npz")
    direct = direct_weights(small_csvs, 2)
    np.testing.assert_array_equal(final.w_input_hidden, direct.w_input_hidden)
    np.testing.assert_array_equal(final.w_hidden_output, direct.w_hidden_output)
    store = locations.store_at(data_dir)
    keys = store.list("")
    assert any(key.startswith("processed/") and key.endswith(".parquet") for key in keys)
    assert any(key.endswith("/report.md") for key in keys)
    assert not any(key.endswith(".lease") for key in keys)  # released
    champion = ModelRegistry(f"{data_dir}/models").champion()
    assert champion is not None and champion.version == "v0001"
    # a second run (another machine) reuses the bucket's ingest and the finished run
    again = flow_module.train_pipeline(**params).to_dict()
    assert again["trained_epochs"] == []
    assert again["decision"]["version"] == "v0001"


def test_a_batch_in_the_bucket_inbox_is_trained_on_once(
    small_csvs: tuple[Path, Path], s3_url: str, tmp_path: Path, mnist_train
) -> None:
    data_dir = f"{s3_url}/data"
    inputs = [f"{s3_url}/inputs/{csv.name}" for csv in small_csvs]
    for csv, url in zip(small_csvs, inputs, strict=True):
        locations.write_bytes(url, csv.read_bytes())
    batch = write_mnist_csv(tmp_path / "batch-01.csv", *(a[2000:2300] for a in mnist_train))
    locations.write_bytes(f"{data_dir}/incoming/batch-01.csv", batch.read_bytes())
    locations.write_bytes(f"{data_dir}/incoming/batch-02.csv.part", b"half a file")
    params = {
        "train_csv": inputs[0],
        "test_csv": inputs[1],
        "hidden_nodes": HIDDEN,
        "epochs": 1,
        "data_dir": data_dir,
        "publish_report": False,
    }
    result = flow_module.train_pipeline(**params).to_dict()
    [member] = result["snapshot"]["batches"]
    assert (member["file"], member["status"], member["accepted"]) == (
        "batch-01.csv",
        "accepted",
        300,
    )
    sha = result["snapshot"]["sha256"]
    store = locations.store_at(data_dir)
    assert store.exists(f"snapshots/{sha[:16]}.json") and store.exists("snapshots/inbox.json")
    meta = json.loads(
        store.read_bytes(result["run_dir"][len(data_dir) + 1 :] + "/checkpoints/epoch-0001.json")
    )
    lineage = meta["lineage"]
    assert lineage["train"]["sha256"] == sha
    assert "+ 1 inbox batch" in lineage["train"]["source_name"]
    assert [b["file"] for b in lineage["snapshot"]["batches"]] == ["batch-01.csv"]
    recent = result["snapshot"]["recent"]
    assert recent["rows"] > 0 and recent["parquet"].startswith(f"{data_dir}/processed/")
    # 2,000 base rows + the batch's 300 less its held-out recent rows
    assert lineage["train"]["rows_accepted"] == 2000 + 300 - recent["rows"]
    again = flow_module.train_pipeline(**params).to_dict()
    assert again["trained_epochs"] == [] and again["run_dir"] == result["run_dir"]
    assert again["snapshot"]["sha256"] == sha and again["decision"]["version"] == "v0001"
