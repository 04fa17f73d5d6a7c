"""The sweep library and the mnist-sweep flow on worker threads."""

from __future__ import annotations

import numpy as np
import pytest

from mnistnn import ConfigError, NetworkConfig, NeuralNetwork
from mnistnn.data.fast_csv import read_csv
from mnistnn.model.checkpoint import load_weights
from mnistnn.runs import sweep


def test_parse_list_forms() -> None:
    assert sweep.parse_list("50,100,200", int, "hidden") == [50, 100, 200]
    assert sweep.parse_list("50:200:50", int, "hidden") == [50, 100, 150, 200]
    assert sweep.parse_list("0.1:0.3:0.1", float, "lr") == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="hidden: expected a comma list or start:stop:step"):
        sweep.parse_list("a,b", int, "hidden")
    with pytest.raises(ConfigError, match="lr: expected"):
        sweep.parse_list("0.1:0.3:0", float, "lr")


def test_grid_is_the_product_without_duplicates() -> None:
    configs = sweep.grid([10, 20, 10], [0.1, 0.2])
    assert len(configs) == 4
    assert {(c.hidden_nodes, c.learning_rate) for c in configs} == {
        (10, 0.1),
        (10, 0.2),
        (20, 0.1),
        (20, 0.2),
    }
    with pytest.raises(ValueError, match="hidden_nodes must be >= 1, got 0"):
        sweep.grid([0], [0.1])
    with pytest.raises(ConfigError, match="learning_rates must list at least one value"):
        sweep.grid([10], [])


@pytest.mark.usefixtures("prefect_harness")
def test_sweep_flow_on_threads_matches_training_alone(small_csvs, tmp_path) -> None:
    from flows.sweep import run_sweep

    result = run_sweep(
        workers=2,
        hidden_nodes=[10, 20],
        learning_rates=[0.05, 0.2],
        epochs=[1, 2],
        train_csv=str(small_csvs[0]),
        test_csv=str(small_csvs[1]),
        data_dir=str(tmp_path),
    )
    assert len(result["points"]) == 8
    pixels, labels = read_csv(small_csvs[0])
    for point in result["points"]:
        if point["epochs"] != 2:
            continue
        alone = NeuralNetwork(
            NetworkConfig(hidden_nodes=point["hidden_nodes"], learning_rate=point["learning_rate"])
        )
        alone.train_epoch(pixels, labels)
        alone.train_epoch(pixels, labels)
        swept = load_weights(f"{point['run_dir']}/weights.npz")
        np.testing.assert_array_equal(swept.w_input_hidden, alone.w_input_hidden)
    again = run_sweep(
        workers=2,
        register_best=True,
        hidden_nodes=[10],
        learning_rates=[0.05],
        epochs=[2],
        train_csv=str(small_csvs[0]),
        test_csv=str(small_csvs[1]),
        data_dir=str(tmp_path),
    )
    assert again["points"][0]["accuracy"] == next(
        p["accuracy"]
        for p in result["points"]
        if (p["hidden_nodes"], p["learning_rate"], p["epochs"]) == (10, 0.05, 2)
    )
    assert again["decision"]["promoted"] is True
    assert again["decision"]["reason"].startswith("first model")
    assert result["decision"] is None
