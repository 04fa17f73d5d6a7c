"""Batch scoring of one input: the output file, pinning, idempotence, shadow scoring, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mnistnn.predict import batch, predictions
from mnistnn.predict.inputs import InboxInput, discover, identify
from mnistnn.predict.predict import output_shares, predict_csv, predict_paths
from tests.predict.scoring_fixtures import pixel_lines, trained, write_images, write_pixel_csv

ROWS = 600


@pytest.fixture(scope="module")
def models(mnist_train) -> tuple[batch.PinnedModel, batch.PinnedModel]:
    pixels, labels = mnist_train[0][:2000], mnist_train[1][:2000]
    champion = batch.PinnedModel("v0001", trained(pixels, labels, hidden=20))
    challenger = batch.PinnedModel("v0002", trained(pixels, labels, hidden=12, seed=3))
    return champion, challenger


def score(
    item: InboxInput, root: Path, champion, challenger=None, **options
) -> predictions.ScoreResult:
    return batch.score_input(
        item,
        identify(item),
        champion,
        challenger,
        predictions_dir=root / "predictions",
        review_dir=root / "review",
        **options,
    )


def inbox_item(folder: Path, name: str) -> InboxInput:
    return next(item for item in discover(folder).inputs if item.name == name)


def test_csv_output_matches_predict_and_is_documented(mnist_test, models, tmp_path: Path) -> None:
    champion, _ = models
    csv = write_pixel_csv(tmp_path / "inbox" / "digits.csv", mnist_test[0][:ROWS])
    result = score(inbox_item(tmp_path / "inbox", "digits.csv"), tmp_path, champion)
    sha = identify(inbox_item(tmp_path / "inbox", "digits.csv"))
    assert Path(result.output) == tmp_path / "predictions" / f"{sha[:16]}-v0001.parquet"
    assert (result.rows, result.scored, result.failed, result.reused) == (ROWS, ROWS, 0, False)
    table = pq.read_table(result.output)
    assert table.column_names == [
        "source", "row", "predicted", "confidence", *(f"p{d}" for d in range(10)),
        "model_version", "scored_at",
    ]  # fmt: skip
    expected = predict_csv(champion.network, csv)
    assert table.column("row").to_pylist() == list(range(1, len(expected) + 1))
    assert table.column("predicted").to_pylist() == expected.tolist()
    assert set(table.column("source").to_pylist()) == {"digits.csv"}
    assert set(table.column("model_version").to_pylist()) == {"v0001"}
    shares = np.column_stack([table.column(f"p{d}").to_numpy() for d in range(10)])
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
    reference = output_shares(champion.network.query(mnist_test[0][:ROWS]))
    np.testing.assert_allclose(shares, reference, rtol=1e-6)
    np.testing.assert_array_equal(table.column("confidence").to_numpy(), shares.max(axis=1))
    metadata = pq.read_schema(result.output).metadata
    assert b"not calibrated probabilities" in metadata[b"mnistnn.probabilities"]
    stored = json.loads(pq.read_metadata(result.output).metadata[predictions.META_KEY])
    assert stored["sha256"] == sha and stored["model_version"] == "v0001"
    assert sum(result.label_counts) == ROWS


def test_rerun_with_the_same_models_does_no_work(mnist_test, models, tmp_path: Path) -> None:
    champion, challenger = models
    write_pixel_csv(tmp_path / "inbox" / "digits.csv", mnist_test[0][:ROWS])
    item = inbox_item(tmp_path / "inbox", "digits.csv")
    first = score(item, tmp_path, champion, challenger)
    stamp = Path(first.output).stat().st_mtime_ns
    again = score(item, tmp_path, champion, challenger)
    assert again.reused and Path(again.output).stat().st_mtime_ns == stamp
    assert {**again.to_dict(), "reused": False, "seconds": 0} == {**first.to_dict(), "seconds": 0}
    # a new challenger (or none) is another output; the champion's columns do not change
    alone = score(item, tmp_path, champion)
    assert not alone.reused and alone.output != first.output
    shadowed, plain = pq.read_table(first.output), pq.read_table(alone.output)
    for column in plain.column_names:
        if column != "scored_at":
            assert shadowed.column(column).equals(plain.column(column)), column


def test_shadow_agreement_and_review_queue(mnist_test, models, tmp_path: Path) -> None:
    champion, challenger = models
    pixels = mnist_test[0][:ROWS]
    write_pixel_csv(tmp_path / "inbox" / "digits.csv", pixels)
    result = score(inbox_item(tmp_path / "inbox", "digits.csv"), tmp_path, champion, challenger)
    ours = champion.network.predict(pixels)
    theirs = challenger.network.predict(pixels)
    assert result.challenger_version == "v0002"
    assert result.agreement == pytest.approx(float(np.mean(ours == theirs)), abs=1e-6)
    assert 0.3 < result.agreement < 1.0  # they do disagree on some digits
    table = pq.read_table(result.output)
    assert table.column("challenger_predicted").to_pylist() == theirs.tolist()
    assert set(table.column("challenger_version").to_pylist()) == {"v0002"}

    confidence = table.column("confidence").to_numpy()
    doubtful = (confidence < 0.6) | (ours != theirs)
    review = pacsv.read_csv(result.review)
    assert review.num_rows == result.review_rows == int(doubtful.sum())
    assert review.column("row").to_pylist() == (np.flatnonzero(doubtful) + 1).tolist()
    assert review.column("label").null_count == review.num_rows
    first = int(review.column("row")[0].as_py()) - 1
    assert [review.column(f"pixel{i}")[0].as_py() for i in range(784)] == pixels[first].tolist()
    reasons = review.column("reason").to_pylist()
    assert any("challenger v0002 says" in reason for reason in reasons)


def test_images_match_predict_and_failures_are_listed(mnist_test, models, tmp_path: Path) -> None:
    champion, _ = models
    write_images(tmp_path / "inbox" / "photos", mnist_test[0][:5])
    result = score(inbox_item(tmp_path / "inbox", "photos"), tmp_path, champion)
    assert (result.rows, result.scored, result.failed) == (6, 5, 1)
    predictions, failures = predict_paths(champion.network, [tmp_path / "inbox" / "photos"])
    table = pq.read_table(result.output)
    assert table.column("source").to_pylist() == [f"photos/d{i}.png" for i in range(5)]
    assert table.column("row").null_count == 5
    assert table.column("predicted").to_pylist() == [p.digit for p in predictions]
    np.testing.assert_allclose(
        table.column("confidence").to_numpy(), [p.confidence for p in predictions], rtol=1e-6
    )
    failed = Path(result.failures_file or "").read_text().splitlines()
    assert failed[0].replace('"', "") == "source,row,reason"
    assert failed[1].startswith('"photos/broken.png",,') and len(failed) == 2
    assert result.first_failures[0][0] == "photos/broken.png"
    assert len(failures) == 1  # predict says the same about broken.png


def test_rows_that_fail_do_not_stop_the_others(mnist_test, models, tmp_path: Path) -> None:
    champion, _ = models
    lines = pixel_lines(mnist_test[0][:ROWS])
    lines[4] = lines[4].replace("0,", "256,", 1)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "some-bad.csv").write_text("\n".join(lines) + "\n")
    result = score(inbox_item(inbox, "some-bad.csv"), tmp_path, champion)
    assert (result.rows, result.scored, result.failed) == (ROWS, ROWS - 1, 1)
    assert result.first_failures == (("some-bad.csv", 5, "column 1 is 256, outside 0..255"),)
    assert 5 not in pq.read_table(result.output).column("row").to_pylist()
    # every row bad: the input is done (an empty output), its failures listed
    (inbox / "all-bad.csv").write_text("1,2,3\n4,5\n")
    result = score(inbox_item(inbox, "all-bad.csv"), tmp_path, champion)
    assert (result.rows, result.scored, result.failed) == (2, 0, 2)
    assert pq.read_table(result.output).num_rows == 0
    assert score(inbox_item(inbox, "all-bad.csv"), tmp_path, champion).reused


def test_output_is_streamed_in_row_groups(mnist_test, models, tmp_path: Path) -> None:
    champion, _ = models
    write_pixel_csv(tmp_path / "inbox" / "digits.csv", mnist_test[0][:2500])
    seen: list[float] = []
    result = score(
        inbox_item(tmp_path / "inbox", "digits.csv"),
        tmp_path,
        champion,
        chunk_rows=1000,
        block_bytes=200_000,
        progress=seen.append,
    )
    parquet = pq.ParquetFile(result.output)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    assert sizes == [1000, 1000, 500]
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 1.0
    assert not list((tmp_path / "predictions").glob(".tmp-*"))


def test_a_crash_leaves_no_output(mnist_test, models, tmp_path: Path, monkeypatch) -> None:
    champion, _ = models
    write_pixel_csv(tmp_path / "inbox" / "digits.csv", mnist_test[0][:ROWS])
    item = inbox_item(tmp_path / "inbox", "digits.csv")

    def boom(done: float) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        score(item, tmp_path, champion, block_bytes=100_000, progress=boom)
    assert list((tmp_path / "predictions").iterdir()) == []
    assert not score(item, tmp_path, champion).reused
