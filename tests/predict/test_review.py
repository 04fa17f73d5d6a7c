"""The review queue round trip: score -> review file -> fill labels -> label import -> ingest."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from flows.cli.main import main
from mnistnn.data.ingest import ingest_csv
from mnistnn.data.parquet import read_parquet
from mnistnn.errors import DataError
from mnistnn.predict import batch, review
from mnistnn.predict.inputs import discover, identify
from tests.predict.scoring_fixtures import trained, write_pixel_csv


@pytest.fixture(scope="module")
def champion(mnist_train) -> batch.PinnedModel:
    return batch.PinnedModel("v0001", trained(mnist_train[0][:2000], mnist_train[1][:2000]))


def scored_review(tmp_path: Path, pixels: np.ndarray, champion, threshold: float = 0.6) -> Path:
    write_pixel_csv(tmp_path / "inbox" / "digits.csv", pixels)
    [item] = discover(tmp_path / "inbox").inputs
    result = batch.score_input(
        item,
        identify(item),
        champion,
        None,
        predictions_dir=tmp_path / "predictions",
        review_dir=tmp_path / "review",
        threshold=threshold,
    )
    assert result.review is not None and result.review_rows > 5
    return Path(result.review)


def fill_labels(path: Path, labels: dict[int, str]) -> None:
    """Fill the label cell of the given data rows (0-based), as a person would in a spreadsheet."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index("label")
    for index, value in labels.items():
        rows[index + 1][column] = value
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_import_writes_a_batch_the_labelled_ingest_accepts(mnist_test, champion, tmp_path) -> None:
    pixels, truth = mnist_test[0][:400], mnist_test[1][:400]
    path = scored_review(tmp_path, pixels, champion)
    with open(path, newline="") as handle:
        source_rows = [int(row["row"]) for row in csv.DictReader(handle)]
    filled = {0: str(truth[source_rows[0] - 1]), 2: str(truth[source_rows[2] - 1]), 3: "12"}
    filled[4] = " " + str(truth[source_rows[4] - 1])
    fill_labels(path, filled)
    summary = review.import_reviewed(path, tmp_path / "incoming")
    assert (summary.labelled, summary.bad) == (3, 1)
    assert summary.unlabelled == summary.rows - 4
    assert summary.problems == ("line 5: label '12' is not a digit 0..9",)
    assert summary.output is not None
    assert Path(summary.output).name.startswith("reviewed-")
    ingested = ingest_csv(summary.output, tmp_path / "processed")
    assert (ingested.rows_accepted, ingested.rows_rejected) == (3, 0)
    got_pixels, got_labels = read_parquet(ingested.parquet)
    picked = [source_rows[i] - 1 for i in (0, 2, 4)]
    np.testing.assert_array_equal(got_pixels, pixels[picked])
    np.testing.assert_array_equal(got_labels, truth[picked])
    again = review.import_reviewed(path, tmp_path / "incoming")
    assert again.already_imported and again.output == summary.output
    assert len(list((tmp_path / "incoming").iterdir())) == 1


def test_nothing_labelled_writes_nothing(mnist_test, champion, tmp_path, capsys) -> None:
    path = scored_review(tmp_path, mnist_test[0][:200], champion)
    summary = review.import_reviewed(path, tmp_path / "incoming")
    assert summary.output is None and summary.labelled == 0
    assert not (tmp_path / "incoming").exists()
    assert main(["--data-dir", str(tmp_path), "label", "import", str(path)]) == 1
    assert "no row has a label filled in" in capsys.readouterr().out
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a review file"):
        review.import_reviewed(bogus, tmp_path / "incoming")


def test_label_import_command_in_both_entry_points(mnist_test, champion, tmp_path, capsys) -> None:
    import subprocess
    import sys

    path = scored_review(tmp_path, mnist_test[0][:200], champion)
    fill_labels(path, {0: "7"})
    assert main(["--data-dir", str(tmp_path), "label", "import", str(path)]) == 0
    assert "wrote 1 labelled rows to" in capsys.readouterr().out
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistnn.cli",
            "--data-dir",
            str(tmp_path),
            "label",
            "import",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "already in" in result.stdout


def test_a_review_in_progress_is_never_overwritten(mnist_test, champion, tmp_path) -> None:
    pixels = mnist_test[0][:300]
    path = scored_review(tmp_path, pixels, champion)
    fill_labels(path, {0: "3"})
    before = path.read_bytes()
    [item] = discover(tmp_path / "inbox").inputs
    other = batch.PinnedModel("v0002", champion.network)  # a new champion rescoring the input
    result = batch.score_input(
        item, identify(item), other, None,
        predictions_dir=tmp_path / "predictions", review_dir=tmp_path / "review",
    )  # fmt: skip
    assert not result.reused and path.read_bytes() == before
    # an untouched queue is replaced, and removed when the new scoring doubts nothing
    fill_labels(path, {0: ""})
    third = batch.PinnedModel("v0003", champion.network)
    batch.score_input(
        item, identify(item), third, None, threshold=0.0,
        predictions_dir=tmp_path / "predictions", review_dir=tmp_path / "review",
    )  # fmt: skip
    assert not path.exists()


def test_review_digits_for_the_report(mnist_test, champion, tmp_path) -> None:
    path = scored_review(tmp_path, mnist_test[0][:300], champion)
    least, disagreements = review.review_digits(path, limit=5)
    assert least.pixels.shape == (5, 784) and len(least.captions) == 5
    assert least.captions[0].startswith("digits.csv:")
    assert disagreements.pixels.shape == (0, 784)  # no challenger, no disagreement
