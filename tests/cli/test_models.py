"""`mnistnn models list | compare | history | show | promote --reason | rollback --reason`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flows.cli.main import main
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.registry.store import ModelRegistry
from tests.conftest import write_mnist_csv
from tests.registry.conftest import register
from tests.registry.test_reads import counting_reads


@pytest.fixture(scope="module")
def regressed(tmp_path_factory: pytest.TempPathFactory, mnist_train, mnist_test):
    """v0001 and v0002 (trained longer, then its digit-3 output damaged), and a labelled CSV
    chosen so that v0002 is better overall but worse on threes."""
    folder = tmp_path_factory.mktemp("data")
    old = NeuralNetwork(NetworkConfig(hidden_nodes=40, seed=0))
    old.train_epoch(mnist_train[0][:2000], mnist_train[1][:2000])
    new = NeuralNetwork(NetworkConfig(hidden_nodes=40, seed=0))
    new.train_epoch(mnist_train[0][:8000], mnist_train[1][:8000])
    new.w_hidden_output[3] -= 0.1  # forgets about one three in seven
    registry = ModelRegistry(folder / "models")
    for network in (old, new):
        registry.register(
            network, metrics={"accuracy": 0.9}, test_sha256="a" * 64, train_sha256="b" * 64
        )
    pixels, labels = mnist_test
    a, b = old.predict(pixels), new.predict(pixels)
    lost_threes = np.flatnonzero((labels == 3) & (a == 3) & (b != 3))[:40]
    gains = np.flatnonzero((labels != 3) & (a != labels) & (b == labels))[:120]
    both = np.flatnonzero((a == labels) & (b == labels))[:300]
    assert len(lost_threes) == 40 and len(gains) == 120, "the damaged model is not as expected"
    rows = np.concatenate([lost_threes, gains, both])
    csv = write_mnist_csv(folder / "threes.csv", pixels[rows], labels[rows])
    return folder, csv


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_compare_refuses_a_class_regression_under_every_policy(regressed, capsys) -> None:
    folder, csv = regressed
    before = (folder / "models" / "registry.json").read_bytes()
    out = run(capsys, "--data-dir", str(folder), "models", "compare", "v0001", "v0002",
              "--test-csv", str(csv), "--json")  # fmt: skip
    result = json.loads(out)
    evidence = result["evidence"]
    assert evidence["newcomer_accuracy"] > evidence["champion_accuracy"]  # better overall ...
    three = next(item for item in evidence["classes"] if item["digit"] == 3)
    assert three["difference"] < -0.05  # ... and worse on threes
    for name in ("better", "significant"):
        verdict = result["verdicts"][name]
        assert (verdict["promoted"], verdict["guardrail"]) == (False, "class_recall"), name
        assert "digit 3 lost recall" in verdict["sentence"]
    words = run(capsys, "--data-dir", str(folder), "models", "compare", "v0001", "v0002",
                "--test-csv", str(csv))  # fmt: skip
    assert "| v0001 right | 300 | 40 |" in words and "| v0001 wrong | 120 | 0 |" in words
    assert words.count("refused, digit 3 lost recall") == 2
    assert (folder / "models" / "registry.json").read_bytes() == before  # nothing changed


def test_compare_names_an_unknown_version(regressed, capsys) -> None:
    folder, csv = regressed
    code = main(["--data-dir", str(folder), "models", "compare", "v0001", "v0009",
                 "--test-csv", str(csv)])  # fmt: skip
    assert code == 1
    assert "unknown version v0009; known: v0001, v0002" in capsys.readouterr().err


def test_history_show_and_reasons(store_url: str, capsys) -> None:
    """Locally and on SeaweedFS: every change in order, with its actor and reason."""
    registry = ModelRegistry(f"{store_url}/models")
    for seed, accuracy in ((1, 0.9), (2, 0.8)):
        registry.register(
            NeuralNetwork(NetworkConfig(hidden_nodes=4, seed=seed)),
            metrics={"accuracy": accuracy},
            test_sha256="a" * 64,
            train_sha256="b" * 64,
            flow_run_id=f"run-{seed}",
        )
    data = ["--data-dir", store_url]
    assert "champion is now v0002" in run(capsys, *data, "models", "promote", "v0002",
                                          "--reason", "new digits")  # fmt: skip
    run(capsys, *data, "models", "rollback", "--reason", "too slow")
    lines = run(capsys, *data, "models", "history").splitlines()
    assert [line.split()[2] for line in lines] == ["register", "register", "promote", "rollback"]
    assert lines[2].endswith(": new digits") and lines[3].endswith(": too slow")
    assert "by run-2:" in lines[1]
    entries = json.loads(run(capsys, *data, "models", "history", "--json"))
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    newest = run(capsys, *data, "models", "history", "--last", "2").splitlines()
    assert newest[0] == "  ... 2 older entries not shown (--all shows every one)"
    assert newest[1:] == lines[2:]
    assert run(capsys, *data, "models", "history", "--last", "2", "--all").splitlines() == lines
    shown = run(capsys, *data, "models", "show", "v0002")
    assert shown.startswith("v0002 (challenger), registered ")
    assert "decision (better): not promoted: v0002 (accuracy 0.8000) stays a challenger" in shown
    assert "from: run-2" in shown
    fields = json.loads(run(capsys, *data, "models", "show", "v0002", "--json"))
    assert fields["role"] == "challenger" and fields["flow_run_id"] == "run-2"
    assert fields["config"]["hidden_nodes"] == 4
    assert fields["decision"]["promoted"] is False


def test_the_readme_promotion_commands_run_as_written(regressed, capsys) -> None:
    """Every `mnistnn models` line of the README's Promotion section, on a registry of two."""
    import shlex

    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("**Promotion.**") :].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 4 and all(c.startswith(".venv/bin/mnistnn models ") for c in commands)
    folder, _csv = regressed
    for command in commands:
        argv = shlex.split(command)[1:]
        argv = [
            "--data-dir",
            str(folder),
            *[str(ROOT / a) if a.startswith("data/") else a for a in argv],
        ]
        assert main(argv) == 0, command
    out = capsys.readouterr().out
    assert "significant" in out and "champion is now v0001" in out
    assert ": digit 7 complaints" in ModelRegistry(folder / "models").history()[-1]["reason"]


def test_models_list_shows_the_champion_and_the_newest(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local_registry = ModelRegistry(tmp_path / "models")
    register(local_registry, 1, 0.5)
    for seed in range(2, 8):
        register(local_registry, seed, 0.1)
    data_dir = str(tmp_path)
    read = counting_reads(local_registry, monkeypatch)
    monkeypatch.setattr("mnistnn.registry.store.ModelRegistry", lambda root: local_registry)
    assert main(["--data-dir", data_dir, "models", "list", "--last", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:7] for line in lines[:3]] == ["* v0001", "  v0006", "  v0007"]
    assert lines[3] == "  ... 4 older versions not shown (--all lists every one)"
    assert read == ["v0001", "v0006", "v0007"]
    assert main(["--data-dir", data_dir, "models", "list", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 7


def test_models_list_refuses_a_last_of_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path), "models", "list", "--last", "0"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("argument --last: must be >= 1, got 0")
