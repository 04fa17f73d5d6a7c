"""Snapshots: identity, order, the base alone, loading, and the recent-test slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnistnn.config import DataPaths
from mnistnn.data.ingest import ingest_csv
from mnistnn.data.parquet import read_parquet
from mnistnn.data.snapshot import (
    build_snapshot,
    load_recent,
    load_snapshot,
    read_manifest,
    write_recent_parquet,
)
from mnistnn.data.split import recent_mask, row_buckets
from mnistnn.errors import ConfigError, DataError
from tests.conftest import write_mnist_csv


@pytest.fixture
def setup(tmp_path: Path, mnist_train):  # type: ignore[no-untyped-def]
    paths = DataPaths(tmp_path / "data")
    pixels, labels = mnist_train
    base = ingest_csv(
        write_mnist_csv(tmp_path / "base.csv", pixels[:300], labels[:300]), paths.processed
    )
    batches = []
    for index in range(3):
        rows = slice(1000 + 400 * index, 1400 + 400 * index)
        csv = write_mnist_csv(tmp_path / f"b{index}.csv", pixels[rows], labels[rows])
        summary = ingest_csv(csv, paths.processed)
        batches.append((summary.sha256, summary.parquet))
    return paths, base, batches


def snap(setup, batches=None, fraction=0.1):  # type: ignore[no-untyped-def]
    paths, base, all_batches = setup
    chosen = all_batches if batches is None else batches
    return build_snapshot(
        base.sha256, base.rows_accepted, base.parquet, chosen, paths, recent_fraction=fraction
    )


def test_no_batches_is_the_base_file(setup) -> None:  # type: ignore[no-untyped-def]
    paths, base, _ = setup
    snapshot = snap(setup, [])
    assert snapshot.sha256 == base.sha256 and snapshot.manifest is None
    assert snapshot.train_data == base.parquet
    assert not Path(paths.snapshots).exists()


def test_identity_is_content_and_order(setup) -> None:  # type: ignore[no-untyped-def]
    _, base, batches = setup
    one = snap(setup)
    again = snap(setup)
    assert one.sha256 == again.sha256 and one.manifest == again.manifest
    assert Path(one.manifest).name == f"{one.sha256[:16]}.json"
    reordered = snap(setup, [batches[1], batches[0], batches[2]])
    fewer = snap(setup, batches[:2])
    other_fraction = snap(setup, fraction=0.2)
    assert (
        len({one.sha256, reordered.sha256, fewer.sha256, other_fraction.sha256, base.sha256}) == 5
    )
    manifest = json.loads(Path(one.manifest).read_text())
    assert [m["role"] for m in manifest["members"]] == ["base", "batch", "batch", "batch"]
    assert [m["sha256"] for m in manifest["members"][1:]] == [sha for sha, _ in batches]
    assert all("/" not in m["parquet"] for m in manifest["members"])  # no paths: relocatable


def test_load_concatenates_base_then_training_rows_in_order(setup) -> None:  # type: ignore[no-untyped-def]
    _, base, batches = setup
    snapshot = snap(setup)
    pixels, labels = load_snapshot(snapshot.manifest)
    assert pixels.flags.c_contiguous and not pixels.flags.writeable
    assert len(labels) == snapshot.train_rows == 300 + sum(m.train_rows for m in snapshot.batches)
    expected_p, expected_l = [read_parquet(base.parquet)[0]], [read_parquet(base.parquet)[1]]
    for _, parquet in batches:
        p, lab = read_parquet(parquet)
        keep = ~recent_mask(p, lab, 0.1)
        expected_p.append(p[keep])
        expected_l.append(lab[keep])
    np.testing.assert_array_equal(pixels, np.concatenate(expected_p))
    np.testing.assert_array_equal(labels, np.concatenate(expected_l))


def test_recent_slice_is_deterministic_and_disjoint(setup, mnist_train) -> None:  # type: ignore[no-untyped-def]
    snapshot = snap(setup)
    train_p, _ = load_snapshot(snapshot.manifest)
    recent_p, recent_l = load_recent(snapshot.manifest)
    assert 0 < len(recent_l) == snapshot.recent_rows < 0.2 * 1200
    train_rows = {row.tobytes() for row in train_p}
    assert not any(row.tobytes() in train_rows for row in recent_p)
    pixels, labels = mnist_train[0][:5000], mnist_train[1][:5000]
    mask = recent_mask(pixels, labels, 0.1)
    np.testing.assert_array_equal(mask, recent_mask(pixels.copy(), labels.copy(), 0.1))
    assert 0.08 < mask.mean() < 0.12
    # a row's side depends on the row alone, not on its neighbours or position
    np.testing.assert_array_equal(recent_mask(pixels[::-1], labels[::-1], 0.1), mask[::-1])
    assert not recent_mask(pixels, labels, 0.0).any()
    assert row_buckets(pixels[:3], labels[:3]).tolist() == row_buckets(pixels, labels)[:3].tolist()
    # the label is part of the row: relabelling moves rows
    assert (recent_mask(pixels, (labels + 1) % 10, 0.1) != mask).any()


def test_base_rows_are_never_held_out(setup) -> None:  # type: ignore[no-untyped-def]
    snapshot = snap(setup, fraction=0.5)
    assert snapshot.base.recent_rows == 0 and snapshot.base.train_rows == 300


def test_recent_parquet_is_the_recent_rows(setup) -> None:  # type: ignore[no-untyped-def]
    snapshot = snap(setup)
    path, sha, rows = write_recent_parquet(snapshot)
    pixels, labels = read_parquet(path)
    recent_p, recent_l = load_recent(snapshot.manifest)
    np.testing.assert_array_equal(pixels, recent_p)
    np.testing.assert_array_equal(labels, recent_l)
    assert rows == len(labels) and write_recent_parquet(snapshot) == (path, sha, rows)
    assert write_recent_parquet(snap(setup, [])) is None


def test_a_tampered_manifest_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    snapshot = snap(setup)
    path = Path(snapshot.manifest)
    path.write_bytes(path.read_bytes().replace(b'"recent_fraction":0.1', b'"recent_fraction":0.2'))
    with pytest.raises(DataError, match="does not match its name"):
        read_manifest(path)


def test_recent_fraction_is_checked(setup) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="recent_fraction"):
        snap(setup, fraction=0.9)
