"""The mnist-training flow with `data_dir=s3://...` (inputs in the bucket too), on SeaweedFS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows import training as flow_module
from mnistnn.core import locations
from mnistnn.model.checkpoint import load_weights
from mnistnn.registry.store import ModelRegistry
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
    result = flow_module.train_pipeline(**params)
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
    again = flow_module.train_pipeline(**params)
    assert again["trained_epochs"] == []
    assert again["decision"]["version"] == "v0001"
