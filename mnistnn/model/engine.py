"""Compiled training loops: the reference per-sample SGD without Python overhead per sample.

The reference loop spends most of its time in numpy call overhead (a dozen small array ops per
sample). Here one numba function runs a whole epoch (`engine_threads`). To keep the hot loops
in SIMD vectors without reordering any floating-point sum, the weights are held transposed,
W_ih^T (784, hidden) and W_ho^T (hidden, 10): the forward pass accumulates
`hidden += x[k] * w_t[k, :]` over k in order, and the update `w_t[k, :] += lr * (delta * x[k])`
keeps the reference's operation order exactly (`engine_simd`).

On two cores or more, `sgd_epoch` can split the hidden units between two threads
(`engine_threads`): each owns half the columns of W_ih^T, so its half of the weights stays in its
own core's L2, and the threads meet once per sample. Every sum keeps its order, so the weights are
bit-identical to the one-thread loop. `threads=1` or the environment variable `MNISTNN_THREADS=1`
forces the one-thread loop.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mnistnn.errors import ConfigError
from mnistnn.model.engine_threads import thread_epoch
from mnistnn.types import FloatArray, LabelArray, PixelArray

THREADS_ENV = "MNISTNN_THREADS"
"""Environment variable: `1` forces the one-thread loop, `2` the two-thread one, `auto` (or
unset) measures both as the epoch goes (`sgd_epoch`)."""

MIN_ROWS_FOR_THREADS = 64
"""Fewer rows than this run on one thread: starting the second thread costs about a sample."""

CHUNK_ROWS = 4096
"""`auto`: rows run at a time with the faster loop (a chunk costs one layout copy, ~0.1%)."""

PROBE_ROWS = 256
"""`auto`: rows run with the other loop, first and after every PROBE_EVERY chunks, to time it."""

PROBE_EVERY = 4

last_auto_rows = {1: 0, 2: 0}
"""Rows the latest `auto` epoch ran on one and on two threads (for the benchmark)."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_mode(threads: int | None = None) -> int:
    """1 or 2 threads, or 0 for `auto`: `threads`, else `$MNISTNN_THREADS`, else auto.

    Auto is 1 on a single CPU. The engine uses at most two threads (more count as two); an
    explicit 2 is honoured on one CPU too (slower, not wrong).
    """
    if threads is None:
        setting = os.environ.get(THREADS_ENV, "").strip().lower()
        if setting in ("", "auto"):
            return 0 if available_cpus() >= 2 else 1
        try:
            threads = int(setting)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV}={setting!r}: expected 1, 2 or auto") from None
    if threads < 1:
        raise ConfigError(f"threads must be 1 or more, got {threads!r}")
    return min(threads, 2)


def sgd_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    learning_rate: float,
    *,
    threads: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Run one per-sample SGD epoch; return the new (w_input_hidden, w_hidden_output).

    threads: 1 runs the one-thread loop; 2 splits the hidden units between two threads (the
    same weights, bit for bit); None (the default) reads `$MNISTNN_THREADS` (`1`, `2` or
    `auto`) and is `auto` when unset: on two CPUs or more the epoch runs in chunks of
    CHUNK_ROWS with whichever loop was faster on its latest PROBE_ROWS rows, so a machine
    whose other core is busy falls back to one thread. Splitting the epoch is exact too: a
    chunk starts with its first sample's forward pass and ends with its last sample's update,
    the operations the one loop does. Epochs under MIN_ROWS_FOR_THREADS rows, or a hidden
    layer of one unit, run on one thread.
    """
    pixels = np.ascontiguousarray(pixels)
    labels = np.ascontiguousarray(labels)
    lr = np.array([learning_rate], dtype=scale.dtype)
    mode = thread_mode(threads)
    if mode == 1 or w_input_hidden.shape[0] < 2 or len(pixels) < MIN_ROWS_FOR_THREADS:
        return thread_epoch(pixels, labels, scale, w_input_hidden, w_hidden_output, lr, 1)
    if mode == 2:
        return thread_epoch(pixels, labels, scale, w_input_hidden, w_hidden_output, lr, 2)
    return _auto_epoch(pixels, labels, scale, w_input_hidden, w_hidden_output, lr)


class _AutoState:
    """What `auto` knows of one (dtype, hidden) shape: seconds per row of each loop (0: never
    timed), and after how many chunks of the faster loop the other is timed again."""

    def __init__(self) -> None:
        self.seconds_per_row = {1: 0.0, 2: 0.0}
        self.interval = PROBE_EVERY
        self.since_probe = 0

    def next_run(self) -> tuple[int, int]:
        """(threads, rows) of the next run."""
        for mode in (2, 1):
            if self.seconds_per_row[mode] == 0.0:
                return mode, PROBE_ROWS
        best = 1 if self.seconds_per_row[1] < self.seconds_per_row[2] else 2
        if self.since_probe >= self.interval:
            return 3 - best, PROBE_ROWS
        return best, CHUNK_ROWS

    def timed(self, mode: int, rows: int, seconds: float) -> None:
        """Record a run: a re-timed loop that lost again is re-timed half as often (down to
        every 8 * PROBE_EVERY chunks); one that won is the faster loop from now on."""
        probed = self.seconds_per_row[1] > 0.0 and self.seconds_per_row[2] > 0.0
        best = 1 if self.seconds_per_row[1] < self.seconds_per_row[2] else 2
        self.seconds_per_row[mode] = max(seconds / rows, 1e-12)
        if not probed or mode == best:
            self.since_probe += 1
            return
        self.since_probe = 0
        lost = self.seconds_per_row[mode] >= self.seconds_per_row[best]
        self.interval = min(2 * self.interval, 8 * PROBE_EVERY) if lost else PROBE_EVERY


_auto_states: dict[tuple[str, int], _AutoState] = {}


def _auto_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    lr: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The epoch in chunks, each with the loop (1 or 2 threads) that was faster when last timed.

    Each loop is timed on PROBE_ROWS rows the first time a shape is trained (two threads, then
    one); then the faster runs CHUNK_ROWS at a time and the other is re-timed on PROBE_ROWS
    rows every PROBE_EVERY chunks (less often while it keeps losing). The timings carry over to
    the next epoch. When another process takes a core, the two threads wait for each other at
    every sample and one thread wins; when it leaves, two threads win again.
    """
    state = _auto_states.setdefault((scale.dtype.str, w_input_hidden.shape[0]), _AutoState())
    weights = (w_input_hidden, w_hidden_output)
    last_auto_rows.update({1: 0, 2: 0})
    start = 0
    while start < len(pixels):
        mode, rows = state.next_run()
        stop = min(len(pixels), start + rows)
        if stop - start < MIN_ROWS_FOR_THREADS:
            mode = 1
        started = time.perf_counter()
        weights = thread_epoch(pixels[start:stop], labels[start:stop], scale, *weights, lr, mode)
        state.timed(mode, stop - start, time.perf_counter() - started)
        last_auto_rows[mode] += stop - start
        start = stop
    return weights
