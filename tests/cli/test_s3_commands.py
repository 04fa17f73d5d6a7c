"""Every data command with the global `--data-dir s3://...`, on SeaweedFS, checked by its outputs.

One bucket per module: the bundled-file names under `raw/` hold a 2,000/500-row slice and one
1-epoch run trains the champion that the commands then use.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows import training as flow_module
from flows.cli.main import main
from mnistnn.core import locations
from mnistnn.predict.predict import predict_paths
from mnistnn.registry.store import ModelRegistry
from tests.conftest import write_mnist_csv
from tests.predict.scoring_fixtures import write_pixel_csv
from tests.s3fixtures import new_bucket
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.usefixtures("prefect_harness")

HIDDEN = 16


@dataclass(frozen=True)
class Bucket:
    data: str  # s3://<bucket>/data
    accuracy: float  # the champion's test accuracy, as the training run reported it
    tmp: Path


@pytest.fixture(scope="module")
def bucket(
    s3_module_env: SeaweedServer,
    prefect_harness: object,
    small_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Bucket:
    data = f"s3://{new_bucket(s3_module_env)}/data"
    for csv_file, name in zip(small_csvs, ("mnist_train", "mnist_test"), strict=True):
        locations.write_bytes(f"{data}/raw/{name}.csv.gz", csv_file.read_bytes())
    result = flow_module.train_pipeline(
        train_csv=f"{data}/raw/mnist_train.csv.gz",
        test_csv=f"{data}/raw/mnist_test.csv.gz",
        hidden_nodes=HIDDEN,
        epochs=1,
        data_dir=data,
    )
    return Bucket(data, result.accuracy, tmp_path_factory.mktemp("s3cli"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == 0, captured.err
    return code, captured.out


def check_ingest(b: Bucket, out: str) -> None:
    assert "500 rows read, 500 accepted, 0 rejected" in out
    assert any(key.endswith(".parquet") for key in locations.store_at(b.data).list("processed/"))


def check_models(b: Bucket, out: str) -> None:
    [line] = out.splitlines()
    assert line.startswith("* v0001  champion") and f"accuracy {b.accuracy:.4f}" in line


def check_evaluate(b: Bucket, out: str) -> None:
    scores = json.loads(out)
    assert scores["accuracy"] == pytest.approx(b.accuracy) and scores["n_samples"] == 500


def check_predict(b: Bucket, out: str) -> None:
    [answer] = json.loads(out)
    champion = ModelRegistry(f"{b.data}/models").load("v0001")
    [expected], _ = predict_paths(champion, [str(b.tmp / "digit.png")])
    assert answer["digit"] == expected.digit
    assert answer["confidence"] == pytest.approx(expected.confidence, abs=1e-4)


def check_train(b: Bucket, out: str) -> None:
    result = json.loads(out)
    assert result["ran"] is False and result["accuracy"] == b.accuracy  # answered from the bucket
    assert result["decision"]["version"] == "v0001"


def check_sweep(b: Bucket, out: str) -> None:
    result = json.loads(out)
    [point] = result["points"]
    assert point["hidden_nodes"] == 8 and 0.1 < point["accuracy"] <= 1.0
    assert result["report"].startswith(f"{b.data}/") and locations.exists(result["report"])


COMMANDS: dict[str, tuple[Callable[[Bucket], list[str]], Callable[[Bucket, str], None]]] = {
    "ingest": (lambda b: ["ingest", f"{b.data}/raw/mnist_test.csv.gz"], check_ingest),
    "models list": (lambda b: ["models", "list"], check_models),
    "evaluate": (lambda b: ["evaluate", "--json"], check_evaluate),
    "predict": (lambda b: ["predict", str(b.tmp / "digit.png"), "--json"], check_predict),
    "train again": (
        lambda b: ["train", "--epochs", "1", "--hidden", str(HIDDEN), "--json"],
        check_train,
    ),
    "sweep": (lambda b: ["sweep", "--hidden", "8", "--epochs", "1", "--json"], check_sweep),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_on_s3(
    bucket: Bucket, command: str, capsys: pytest.CaptureFixture[str], mnist_test: Any
) -> None:
    argv, check = COMMANDS[command]
    if command == "predict":
        digit = mnist_test[0][7].reshape(28, 28)
        Image.fromarray(np.ascontiguousarray(digit)).save(bucket.tmp / "digit.png")
    code, out = run(capsys, "--data-dir", bucket.data, *argv(bucket))
    assert code == 0, out
    check(bucket, out)


def test_score_label_import_watch_on_s3(
    bucket: Bucket, capsys: pytest.CaptureFixture[str], mnist_test: Any
) -> None:
    """score -> review file in the bucket -> labels filled in -> label import -> watch."""
    pixels, labels = mnist_test[0][600:660], mnist_test[1][600:660]
    local = write_pixel_csv(bucket.tmp / "digits.csv", pixels)
    locations.write_bytes(f"{bucket.data}/unlabelled/digits.csv", local.read_bytes())
    code, out = run(capsys, "--data-dir", bucket.data, "score", "--threshold", "0.9", "--json")
    assert code == 0, out
    [scored] = json.loads(out)["inputs"]
    assert (scored["rows"], scored["scored"], scored["failed"]) == (60, 60, 0)
    assert scored["output"].startswith(f"{bucket.data}/predictions/")
    table = pq.read_table(locations.local_copy(scored["output"]))
    champion = ModelRegistry(f"{bucket.data}/models").load("v0001")
    expected = np.argmax(champion.query(pixels), axis=1)
    np.testing.assert_array_equal(table.column("predicted").to_numpy(), expected)
    assert scored["review"].startswith(f"{bucket.data}/review/")
    # a person labels the review rows (with the true digits) and saves the file back
    rows = list(csv.DictReader(io.StringIO(locations.read_bytes(scored["review"]).decode())))
    assert 0 < len(rows) <= 60
    for row in rows:
        row["label"] = str(labels[int(row["row"]) - 1])
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    reviewed = f"{bucket.data}/reviewed/{locations.name(scored['review'])}"
    locations.write_bytes(reviewed, text.getvalue().encode())
    code, out = run(capsys, "--data-dir", bucket.data, "label", "import", reviewed)
    assert code == 0 and f"wrote {len(rows)} labelled rows to {bucket.data}/incoming/" in out
    # a batch dropped into the bucket inbox beside it, and a half-written one that is ignored
    batch = write_mnist_csv(bucket.tmp / "drop-01.csv", pixels[:30], labels[:30])
    locations.write_bytes(f"{bucket.data}/incoming/drop-01.csv", batch.read_bytes())
    locations.write_bytes(f"{bucket.data}/incoming/drop-02.csv.part", b"1,2,3")
    watch = ("--data-dir", bucket.data, "watch", "--once", "--json")
    code, out = run(capsys, *watch)
    assert code == 0, out
    new = {item["file"]: item for item in json.loads(out)["new"]}
    names = sorted(new)
    assert len(names) == 2 and names[0] == "drop-01.csv" and names[1].startswith("reviewed-")
    accepted = {name: item["accepted"] for name, item in new.items()}
    assert accepted.pop("drop-01.csv") == 30 and list(accepted.values()) == [len(rows)]
    assert all(item["parquet"].startswith(f"{bucket.data}/processed/") for item in new.values())
    assert locations.store_at(bucket.data).exists("snapshots/inbox.json")
    code, out = run(capsys, *watch)
    assert code == 0 and json.loads(out)["new"] == []
