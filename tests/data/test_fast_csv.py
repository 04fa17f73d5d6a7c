"""The trusted fast CSV reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistnn import DataError
from mnistnn.data.fast_csv import read_csv
from tests.conftest import write_mnist_csv

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_bundled_files(mnist_train, mnist_test) -> None:
    for (pixels, labels), counts in ((mnist_train, TRAIN_COUNTS), (mnist_test, TEST_COUNTS)):
        assert pixels.dtype == np.uint8 and labels.dtype == np.uint8
        assert pixels.shape == (len(labels), 784) and pixels.flags.c_contiguous
        assert np.bincount(labels).tolist() == counts


def test_plain_and_gz_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (5, 784), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    for name in ("a.csv", "a.csv.gz"):
        x, y = read_csv(write_mnist_csv(tmp_path / name, pixels, labels))
        np.testing.assert_array_equal(x, pixels)
        np.testing.assert_array_equal(y, labels)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.csv: no such file"):
        read_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(DataError, match="bad.csv: not a clean MNIST CSV"):
        read_csv(bad)
    out_of_range = tmp_path / "range.csv"
    out_of_range.write_text(",".join(["1"] + ["300"] * 784) + "\n")
    with pytest.raises(DataError, match="range.csv: not a clean MNIST CSV"):
        read_csv(out_of_range)


def test_bundled_files_match_their_published_checksums() -> None:
    from mnistnn.core.files import sha256_file
    from tests.conftest import TEST_CSV, TRAIN_CSV

    assert sha256_file(TRAIN_CSV).startswith("8f6164ecd3ccfce4abb3f4d5118fe9b4")
    assert sha256_file(TEST_CSV).startswith("8413822cdd7a3b14f8701f958335219b")
