"""Shared fixtures: the bundled data read once per session, and tiny CSV writers."""

from __future__ import annotations

import gzip
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnistnn.data.fast_csv import read_csv
from tests.s3fixtures import (  # noqa: F401 (fixtures shared by every test folder)
    local_store,
    s3_env,
    s3_module_env,
    s3_store,
    s3_url,
    seaweed,
    store,
    store_url,
)

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CSV = ROOT / "data" / "raw" / "mnist_train.csv.gz"
TEST_CSV = ROOT / "data" / "raw" / "mnist_test.csv.gz"

Arrays = tuple[np.ndarray, np.ndarray]

# Tests write a digit file and score it at once: the scoring inbox's settle time (5 s by default,
# for files still being written) is 0 in tests, processes they start included; the settle rule
# itself is tested with an explicit settle time (tests/predict/test_hostile_inputs.py).
os.environ.setdefault("MNISTNN_SETTLE_SECONDS", "0")


@pytest.fixture(scope="session")
def mnist_train() -> Arrays:
    """The bundled 60,000 training rows (read-only)."""
    pixels, labels = read_csv(TRAIN_CSV)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


@pytest.fixture(scope="session")
def mnist_test() -> Arrays:
    """The bundled 10,000 test rows (read-only)."""
    pixels, labels = read_csv(TEST_CSV)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def write_mnist_csv(path: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """Write rows as the bundled files are: no header, label then 784 pixels (gz by suffix)."""
    rows = np.column_stack([labels.astype(np.int64), pixels.astype(np.int64)])
    text = "\n".join(",".join(map(str, row)) for row in rows) + "\n"
    if path.suffix == ".gz":
        # mtime=0: gzip stamps the time into its header, so the same rows written a second
        # apart would otherwise be two different contents (two batches, two snapshots)
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="session")
def small_csvs(
    tmp_path_factory: pytest.TempPathFactory, mnist_train: Arrays, mnist_test: Arrays
) -> tuple[Path, Path]:
    """A 2,000-row train slice and a 500-row test slice of the real data, as .csv.gz files."""
    folder = tmp_path_factory.mktemp("slices")
    train = write_mnist_csv(
        folder / "train_2000.csv.gz", mnist_train[0][:2000], mnist_train[1][:2000]
    )
    test = write_mnist_csv(folder / "test_500.csv.gz", mnist_test[0][:500], mnist_test[1][:500])
    return train, test


@pytest.fixture(scope="session")
def train_10k_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled train file's first 10,000 lines, as a plain CSV (rows 0..9999 of mnist_train).

    For the e2e tests that stop a training mid-run: an epoch on it is long enough to signal
    between two checkpoints, and six of them cost a sixth of six on the full file.
    """
    path = tmp_path_factory.mktemp("slices") / "train_10000.csv"
    with gzip.open(TRAIN_CSV, "rb") as source:
        path.write_bytes(b"".join(itertools.islice(source, 10_000)))
    return path


@pytest.fixture
def csv_writer(tmp_path: Path) -> Callable[[str, np.ndarray, np.ndarray], Path]:
    """Write a CSV of given rows into tmp_path under a name."""

    def write(name: str, pixels: np.ndarray, labels: np.ndarray) -> Path:
        return write_mnist_csv(tmp_path / name, pixels, labels)

    return write


@pytest.fixture(scope="session")
def prefect_harness() -> object:
    """One temporary Prefect API for the whole session (starting one takes seconds)."""
    from tests.prefect_home import seeded_test_harness

    # generous: on a loaded 2-core machine the server has taken over 60 s to answer
    with seeded_test_harness(server_startup_timeout=180):
        yield


#: The files that take longest, longest first (serial seconds in a fresh-clone `make test`,
#: 2026-12-02: 399, 150, 133, 110, 105, 99, 84, 74, 63, 59), then the other e2e files.
#: `make test` runs three xdist workers that take whole files in collection order
#: (`--no-loadscope-reorder`), so longest first keeps them all busy to the end; started last,
#: one of these would run alone while the other workers sit idle.
LONG_FILES = (
    "tests/e2e/test_automations.py",  # 270-410 s serial (2026-12-03)
    "tests/test_benchmarks.py",
    "tests/e2e/test_s3_workers.py",
    "tests/e2e/test_retrain_loop.py",
    "tests/e2e/test_cli_signals.py",
    "tests/flows/test_training.py",
    "tests/e2e/test_deployment.py",
    "tests/e2e/test_sweep_dask.py",
    "tests/e2e/test_scoring_deployment.py",
    "tests/e2e/test_kill_resume.py",
    "tests/flows/test_cli.py",
    "tests/e2e/",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long files first, in LONG_FILES order (stable: otherwise as collected)."""
    root = Path(config.rootpath)

    def rank(item: pytest.Item) -> int:
        relative = item.path.relative_to(root).as_posix()
        starts = (i for i, prefix in enumerate(LONG_FILES) if relative.startswith(prefix))
        return next(starts, len(LONG_FILES))

    items.sort(key=rank)
