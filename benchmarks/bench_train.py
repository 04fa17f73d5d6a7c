"""Seconds per training epoch: the reference loop against ours (float64, float32, mini-batch).

Every figure is measured in this run on the real bundled data (pre-parsed arrays), so the ratios
compare like with like on whatever machine runs it. `python -m benchmarks.bench_train [--quick]`.
"""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import QUICK_ROWS, TRAIN_CSV, best_of, parser, print_table
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.data.fast_csv import read_csv
from mnistnn.model.network import initial_weights
from tests.reference import ReferenceNetwork, reference_epoch

REFERENCE_ROWS = 10_000  # the reference loop is timed on a slice and scaled to the full epoch


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    started = time.perf_counter()
    pixels, labels = read_csv(TRAIN_CSV)
    read_seconds = time.perf_counter() - started
    if args.quick:
        pixels, labels = pixels[:QUICK_ROWS], labels[:QUICK_ROWS]
    n = len(labels)
    ref_rows = min(REFERENCE_ROWS, n)
    reference = ReferenceNetwork(784, 88, 10, 0.05, *initial_weights(NetworkConfig()))
    started = time.perf_counter()
    reference_epoch(reference, pixels[:ref_rows], labels[:ref_rows])
    reference_seconds = (time.perf_counter() - started) * n / ref_rows

    rows = [("reference loop (numpy per sample)", f"{reference_seconds:.3f} s", "1.0x")]
    for label, config in (
        ("ours float64 (compiled, exact)", NetworkConfig()),
        ("ours float32 (compiled)", NetworkConfig(dtype="float32")),
        ("mini-batch 128 float32 (BLAS)", NetworkConfig(dtype="float32", batch_size=128)),
        ("mini-batch 128 float64 (BLAS)", NetworkConfig(batch_size=128)),
    ):
        network = NeuralNetwork(config)
        network.train_epoch(pixels[:100], labels[:100])  # compile / warm up
        seconds = best_of(
            1 if args.quick else 3, lambda net=network: net.train_epoch(pixels, labels)
        )
        rows.append((label, f"{seconds:.3f} s", f"{reference_seconds / seconds:.1f}x faster"))

    test_network = NeuralNetwork()
    query = best_of(5, lambda: test_network.query(pixels[:10_000]))
    rows.append((f"query {min(n, 10_000)} rows (batched)", f"{query * 1000:.1f} ms", ""))
    startup = _compile_cache_startup()
    rows.append(("second-process start-up of the cached kernel", f"{startup:.3f} s", ""))
    rows.append(("read the 60,000-row .csv.gz (dataset.read_csv)", f"{read_seconds:.3f} s", ""))
    print_table(f"train seconds per epoch, {n} rows", rows)


def _compile_cache_startup() -> float:
    """Seconds a fresh process spends loading the cached compiled kernel and running 1 sample."""
    code = (
        "import time, numpy as np; from mnistnn import NeuralNetwork; n = NeuralNetwork();"
        "x = np.zeros((1, 784), np.uint8); y = np.zeros(1, np.uint8);"
        "t = time.perf_counter(); n.train_epoch(x, y); print(time.perf_counter() - t)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return float(output.strip())


if __name__ == "__main__":
    main()
