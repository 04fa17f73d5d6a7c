"""The command line: each command's output, and every known error as one line + exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli.main import main

BIN = Path(sys.executable).parent


def test_console_script_help() -> None:
    result = subprocess.run(
        [str(BIN / "mnistnn"), "--help"], capture_output=True, text=True, check=True
    )
    for command in ("train", "ingest", "models", "evaluate", "predict", "serve"):
        assert command in result.stdout


def test_train_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--epochs", "--hidden", "--lr", "--seed", "--dtype", "--batch-size", "--json"):
        assert option in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "x"])
    assert info.value.code == 2
    assert "argument --epochs: invalid int value: 'x'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--train-csv", "{tmp}/missing.csv"], "missing.csv: no such file"),
        (["--lr", "-1"], "learning_rate must be > 0.0, got -1.0"),
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--preset", "best", "--momentum", "1"], "momentum must be < 1.0, got 1.0"),
        (["--max-rejected-fraction", "2"], "max_rejected_fraction"),
        (["--drift-threshold", "-0.5"], "drift_threshold"),
        (["--recent-fraction", "1.5"], "recent_fraction"),
        (["--keep-checkpoints", "-1"], "keep_checkpoints"),
    ],
)
def test_train_checks_parameters_and_inputs_before_a_server_starts(
    flags: list[str],
    named: str,
    small_csvs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.server

    def no_server() -> None:
        raise AssertionError("a bad parameter must fail before the Prefect API is needed")

    monkeypatch.setattr(flows.server, "prefect_api", no_server)
    csvs = ["--train-csv", str(small_csvs[0]), "--test-csv", str(small_csvs[1])]
    given = [flag.format(tmp=tmp_path) for flag in flags]
    assert main(["--data-dir", str(tmp_path), "train", *csvs, *given]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mnistnn: error: ")
    assert named in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_ingest_prints_summary_and_errors_are_one_line(
    small_csvs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(tmp_path), "ingest", str(small_csvs[1])]) == 0
    assert "500 rows read, 500 accepted, 0 rejected" in capsys.readouterr().out
    assert main(["--data-dir", str(tmp_path), "ingest", str(tmp_path / "missing.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mnistnn: error: ")
    assert "missing.csv" in err
    assert len(err.strip().splitlines()) == 1


def test_commands_without_a_model_say_how_to_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(image)
    assert main(["--data-dir", str(tmp_path), "predict", str(image)]) == 1
    assert "no model trained yet: run `mnistnn train` first" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path), "models", "list"]) == 0
    assert "no models registered yet" in capsys.readouterr().out
    assert main(["--data-dir", str(tmp_path), "models", "show", "v0009"]) == 1
    assert "v0009" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_train_json_then_models_evaluate_predict(
    small_csvs, mnist_test, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    csvs = ["--train-csv", str(small_csvs[0]), "--test-csv", str(small_csvs[1])]
    assert main([*data, "train", *csvs, "--epochs", "2", "--hidden", "30", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("run_dir", "epochs", "accuracy", "confident", "flow_run_id"):
        assert key in result
    assert result["epochs"] == 2
    assert 0.5 < result["accuracy"] <= 1.0

    assert main([*data, "models", "list"]) == 0
    assert "* v0001  champion    accuracy" in capsys.readouterr().out
    assert main([*data, "evaluate", "--test-csv", str(small_csvs[1]), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] == pytest.approx(result["accuracy"])

    digit = mnist_test[0][0].reshape(28, 28)
    image = tmp_path / "seven.png"
    Image.fromarray(np.asarray(digit)).save(image)
    assert main([*data, "predict", str(image), "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert prediction["digit"] == int(mnist_test[1][0])


@pytest.mark.usefixtures("prefect_harness")
def test_best_preset_one_epoch_on_a_slice(
    small_csvs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    csvs = ["--train-csv", str(small_csvs[0]), "--test-csv", str(small_csvs[1])]
    assert main([*data, "train", *csvs, "--preset", "best", "--epochs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["epochs"] == 1
    run = json.loads((Path(result["run_dir"]) / "run.json").read_text())
    assert run["config"]["hidden_nodes"] == 800
    assert run["config"]["output"] == "softmax"
    assert run["config"]["augment"] != "none"
    assert result["accuracy"] > 0.5


@pytest.mark.usefixtures("prefect_harness")
def test_second_train_answers_without_running_and_fresh_runs(
    small_csvs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--data-dir", str(tmp_path), "train", "--train-csv", str(small_csvs[0])]
    args += ["--test-csv", str(small_csvs[1]), "--epochs", "1", "--hidden", "20", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["ran"] is True

    import flows.server

    def no_server() -> None:
        raise AssertionError("a finished run must not need the Prefect API")

    monkeypatch.setattr(flows.server, "prefect_api", no_server)
    assert main(args) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out.strip().splitlines()[-1])
    assert again["ran"] is False and again["trained_epochs"] == []
    assert again["metrics"] == first["metrics"]
    assert again["decision"]["version"] == first["decision"]["version"]
    assert captured.err.count("nothing to run") == 1
    monkeypatch.undo()
    assert main([*args, "--fresh"]) == 0
    fresh = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fresh["ran"] is True and fresh["trained_epochs"] == [1]
