"""The mnist-batch-predict flow under a Prefect test harness, and the `score` command."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows import scoring
from flows.cli.main import main
from flows.cli.scoring import JSON_INPUT_KEYS
from mnistnn.errors import ConfigError, DataError, RegistryError
from mnistnn.predict import batch
from mnistnn.registry.store import ModelRegistry
from tests.predict.scoring_fixtures import register, trained, write_images, write_pixel_csv

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def networks(mnist_train):
    pixels, labels = mnist_train[0][:2000], mnist_train[1][:2000]
    return trained(pixels, labels, hidden=20), trained(pixels, labels, hidden=12, seed=3)


@pytest.fixture
def data_dir(tmp_path: Path, networks, mnist_test) -> Path:
    """A champion v0001, a challenger v0002 that lost, an inbox of a CSV, images, a labelled CSV."""
    root = tmp_path / "data"
    assert register(root / "models", networks[0], 0.9) == "v0001"
    assert register(root / "models", networks[1], 0.8) == "v0002"
    inbox = root / "unlabelled"
    write_pixel_csv(inbox / "digits.csv", mnist_test[0][:300])
    write_images(inbox / "photos", mnist_test[0][:4])
    (inbox / "train.csv").write_text(",".join(["5"] + ["0"] * 784) + "\n")
    return root


def test_flow_scores_the_inbox_then_does_nothing(data_dir: Path) -> None:
    result = scoring.batch_predict(data_dir=str(data_dir))
    assert (result["model_version"], result["challenger_version"]) == ("v0001", "v0002")
    records = {record["file"]: record for record in result["inputs"]}
    assert set(records) == {"digits.csv", "photos", "train.csv"}
    assert (records["digits.csv"]["scored"], records["photos"]["failed"]) == (300, 1)
    assert "labelled inbox" in records["train.csv"]["error"]
    for name in ("digits.csv", "photos"):
        assert Path(records[name]["output"]).name.endswith("-v0001-vs-v0002.parquet")
        assert records[name]["agreement"] is not None
    stamps = {p: p.stat().st_mtime_ns for p in (data_dir / "predictions").iterdir()}
    again = scoring.batch_predict(data_dir=str(data_dir))
    assert all(r["reused"] for r in again["inputs"] if not r["error"])
    assert again["scored_rows"] == 0
    assert {p: p.stat().st_mtime_ns for p in (data_dir / "predictions").iterdir()} == stamps


def test_the_model_is_pinned_for_the_whole_run(data_dir: Path, monkeypatch) -> None:
    """A promotion after the first input must not reach the second."""
    real = batch.score_input
    calls = []

    def promote_midway(item, sha256, champion, challenger, **options):
        calls.append(champion.version)
        if len(calls) == 1:
            ModelRegistry(data_dir / "models").promote("v0002")
        return real(item, sha256, champion, challenger, **options)

    monkeypatch.setattr(batch, "score_input", promote_midway)
    result = scoring.batch_predict(data_dir=str(data_dir), challenger="none")
    assert calls == ["v0001", "v0001", "v0001"]
    for record in result["inputs"]:
        if not record["error"]:
            versions = pq.read_table(record["output"]).column("model_version").to_pylist()
            assert set(versions) == {"v0001"}
    assert ModelRegistry(data_dir / "models").champion().version == "v0002"


def test_parameters_are_checked_before_any_work(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="threshold must be a number in 0..1"):
        scoring.batch_predict(data_dir=str(data_dir), threshold=1.5)
    with pytest.raises(ConfigError, match="challenger must be a version"):
        scoring.batch_predict(data_dir=str(data_dir), challenger="best")
    with pytest.raises(ConfigError, match="does not exist"):
        scoring.batch_predict(data_dir=str(data_dir), unlabelled=str(data_dir / "nope"))
    assert not (data_dir / "predictions").exists()


def test_no_champion_and_nothing_scorable_fail(tmp_path: Path, mnist_test, capsys) -> None:
    write_pixel_csv(tmp_path / "unlabelled" / "digits.csv", mnist_test[0][:10])
    with pytest.raises(RegistryError, match="run `mnistnn train` first"):
        scoring.batch_predict(data_dir=str(tmp_path))
    assert main(["--data-dir", str(tmp_path), "score"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mnistnn: error: no model trained yet: run `mnistnn train` first"]


def test_everything_failed_fails_the_run(tmp_path: Path, networks) -> None:
    register(tmp_path / "models", networks[0], 0.9)
    (tmp_path / "unlabelled").mkdir()
    (tmp_path / "unlabelled" / "bad.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match="nothing could be scored: bad.csv: every row failed"):
        scoring.batch_predict(data_dir=str(tmp_path), publish_report=False)


def test_score_command_json(data_dir: Path, capsys) -> None:
    status = main(["--data-dir", str(data_dir), "score", "--json", "--challenger", "none"])
    assert status == 2  # a refused input and a failed image
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(out) == ["model_version", "challenger_version", "inputs"]
    assert (out["model_version"], out["challenger_version"]) == ("v0001", None)
    assert all(tuple(record) == JSON_INPUT_KEYS for record in out["inputs"])
    assert [record["file"] for record in out["inputs"]] == ["digits.csv", "photos", "train.csv"]
