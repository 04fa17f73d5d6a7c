"""The per-sample engine on one thread, on two threads and in `auto`, against the reference loop.

All measured in this run on the bundled train data, interleaved (1 thread, 2 threads, auto, then
again) so that load from other processes hits every variant alike; each figure is the best of
the repeats and the spread (slowest / best) is printed. The two-thread loop waits for its partner
at every sample: when another process takes one of the two cores it is slower than one thread,
which `auto` (the default) detects. `python -m benchmarks.bench_threads [--quick]`.

Measured on the 2-vCPU KVM box (AMD EPYC, 512 KB L2 per core), quiet (load < 0.5), with the
explicit-vector sweeps of `engine_simd` (2026-12-02): float32 two threads 21-22x the reference in
two runs (the previous engine, whose LLVM-vectorised rows paid an aliasing check and a scalar
tail at every row: 10.6x in the same session); float64 two threads 1.41x and 2.33x one thread.
With other processes on the box (load 2-5), each wait can last a scheduler slice and two threads
run 0.2-1.0x one thread, which `auto` detects.
"""

from __future__ import annotations

import os
import time

from benchmarks.common import QUICK_ROWS, TRAIN_CSV, parser, print_table
from mnistnn import NetworkConfig
from mnistnn.data.fast_csv import read_csv
from mnistnn.model import engine
from mnistnn.model.maths import input_scale
from mnistnn.model.network import initial_weights
from tests.reference import ReferenceNetwork, reference_epoch

REFERENCE_ROWS = 10_000  # the reference loop is timed on a slice and scaled to the full epoch
TARGETS = {  # (variant, against, ratio): the targets
    "float64": (("2 threads", "1 thread", 1.6), ("2 threads", "reference", 10.0)),
    "float32": (("2 threads", "reference", 16.0),),
}
VARIANTS = {"1 thread": 1, "2 threads": 2, "auto": None}


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    pixels, labels = read_csv(TRAIN_CSV)
    if args.quick:
        pixels, labels = pixels[:QUICK_ROWS], labels[:QUICK_ROWS]
    n = len(labels)
    repeats = 1 if args.quick else 3
    ref_rows = min(500 if args.quick else REFERENCE_ROWS, n)
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, str, str]] = []
    for dtype in ("float64", "float32"):
        start = initial_weights(NetworkConfig(dtype=dtype))
        scale = input_scale(dtype)
        reference = ReferenceNetwork(784, 88, 10, 0.05, *initial_weights(NetworkConfig()))
        started = time.perf_counter()
        reference_epoch(reference, pixels[:ref_rows], labels[:ref_rows])  # float64, as the book
        seconds = {"reference": (time.perf_counter() - started) * n / ref_rows}
        for threads in (1, 2):  # compile / load the cached kernels (auto runs the same ones)
            engine.sgd_epoch(pixels[:200], labels[:200], scale, *start, 0.05, threads=threads)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        auto_two = 0
        for _ in range(repeats):
            for name, threads in VARIANTS.items():
                started = time.perf_counter()
                engine.sgd_epoch(pixels, labels, scale, *start, 0.05, threads=threads)
                times[name].append(time.perf_counter() - started)
                if threads is None:
                    auto_two += engine.last_auto_rows[2]
        seconds.update({name: min(values) for name, values in times.items()})
        rows.append((f"{dtype} reference loop (book, numpy)", f"{seconds['reference']:.3f} s", ""))
        for name, values in times.items():
            spread = f"spread {max(values) / min(values):.2f}"
            ratio = f"{seconds['reference'] / min(values):.1f}x reference, {spread}"
            if name == "auto":
                ratio += f", {auto_two / (n * repeats):.0%} of rows on 2 threads"
            rows.append((f"{dtype} engine, {name}", f"{min(values):.3f} s", ratio))
        for variant, against, target in TARGETS[dtype]:
            ratio = seconds[against] / seconds[variant]
            verdict = "met" if ratio >= target else "NOT met"
            rows.append(
                (f"{dtype} {variant} / {against}", f"{ratio:.2f}x", f"target {target}x: {verdict}")
            )
    load = f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    rows.append((f"machine load ({os.cpu_count()} cores)", "", load))
    print_table(f"two-thread engine, seconds per epoch, {n} rows", rows)


if __name__ == "__main__":
    main()
