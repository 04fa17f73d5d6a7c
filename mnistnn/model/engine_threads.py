"""The per-sample SGD loop, on one thread or with the hidden units split between two.

`thread_epoch(..., threads=1)` runs `_sgd_units` over all hidden units; `threads=2` runs it on
the calling thread (units 0 .. h//2 - 1) and on one helper thread (the rest). Each thread owns
its columns of W_ih^T, so with two its half of the weights stays in its own core's L2, and the
threads meet once per sample (`engine_sync.rendezvous`). Every sum keeps its order, so the
weights are bit-identical whichever runs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np
from numba import njit

from mnistnn.model import engine_simd as simd
from mnistnn.model.engine_fused import load_input, output_deltas, step_input_layer
from mnistnn.model.engine_sync import ABORT, FLAG_SLOTS, rendezvous
from mnistnn.types import FloatArray, LabelArray, PixelArray

KERNEL_SOURCES = "e61131482fbd4de5"
"""sha256 (first 16 hex digits) of engine_fused.py, engine_simd.py and engine_sync.py, in that
order. numba's on-disk cache of `_sgd_units` is keyed on this file's text alone, yet the loop
is compiled with those files' kernels inlined: a change there must change this file, or a
machine would go on running the cached old kernels. A test recomputes it."""


@njit(cache=True, nogil=True)
def _sgd_units(
    thread: int,
    n_threads: int,
    first: int,
    n_own: int,
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_own_t: FloatArray,
    w_ho_t: FloatArray,
    n_outputs: int,
    activations: FloatArray,
    learning_rate: FloatArray,
    flags: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """One thread's share of an epoch: the n_own hidden units from `first` on.

    thread 0 or 1 of n_threads (1 or 2); w_own_t (784, width >= n_own) this thread's columns
    of W_ih^T (no other thread touches them), zero beyond n_own; w_ho_t (hidden, out_width)
    W_ho^T, this thread's own copy, zero beyond n_outputs columns (the widths are multiples of
    `simd.lanes`: the padding keeps every sweep in whole vectors, and a zero column stays zero
    because its delta is zero); activations (2, hidden) the hidden layer, double-buffered and
    shared: sample s writes row s % 2; flags (FLAG_SLOTS,) int64 zeros, shared. Returns 0, or 1
    when the other thread aborted.

    Per sample, each thread: the sigmoid of its units into activations[s % 2]; the rendezvous
    (both halves are there); the output layer and its error from all of W_ho and the hidden
    layer; the hidden error of its own units from the pre-update W_ho; the update of all of its
    copy of W_ho (both threads compute the same output and update the same copy with the same
    operations, so the two copies stay equal bit for bit and no weights cross between cores);
    its own units' W_ih update, fused with their part of the next sample's forward pass. One
    rendezvous a sample suffices: a thread passes rendezvous s + 1 only once the other has
    finished sample s, so a row of activations is rewritten (at s + 2) only after the other
    thread's last read of it.

    Sum orders, as the reference: hidden[j] over k = 0..783 (per column, so splitting the
    columns changes nothing); output[i] over j = 0..hidden - 1; the hidden error over i.
    """
    n_samples, n_inputs = pixels.shape
    width = w_own_t.shape[1]
    out_width = w_ho_t.shape[1]
    lr = learning_rate[0]
    one = scale.dtype.type(1.0)
    x = np.empty(n_inputs, dtype=scale.dtype)
    x_next = np.empty(n_inputs, dtype=scale.dtype)
    hidden = np.zeros(width, dtype=scale.dtype)  # pre-activation of the own units
    hidden_next = np.zeros(width, dtype=scale.dtype)
    output = np.zeros(out_width, dtype=scale.dtype)
    output_error = np.zeros(out_width, dtype=scale.dtype)
    delta_output = np.zeros(out_width, dtype=scale.dtype)  # zero on the padding
    delta_hidden = np.zeros(width, dtype=scale.dtype)  # zero on the padding
    if n_samples == 0:
        return 0
    load_input(pixels, 0, scale, x)
    simd.forward(w_own_t, x, hidden)  # the first sample's, own units; later ones are fused
    for sample in range(n_samples):
        active = activations[sample & 1]
        for j in range(n_own):
            active[first + j] = one / (one + np.exp(-hidden[j]))
        if n_threads == 2 and not rendezvous(flags, thread, sample + 1):
            return 1
        # output layer, all units: output[i] = sum over j in order of W_ho^T[j, i] * active[j]
        output[:] = 0
        simd.forward(w_ho_t, active, output)
        for i in range(n_outputs):
            output[i] = one / (one + np.exp(-output[i]))
        output_deltas(output, n_outputs, labels, sample, output_error, delta_output)
        # own units' hidden error from the pre-update W_ho (as the reference: no sigmoid
        # derivative in the error itself), then W_ho += lr * (delta_output outer active)
        for j in range(n_own):
            unit = first + j
            error_hidden = w_ho_t[unit, 0] * output_error[0]
            for i in range(1, n_outputs):
                error_hidden += w_ho_t[unit, i] * output_error[i]
            aj = active[unit]
            delta_hidden[j] = error_hidden * aj * (one - aj)
        simd.update(w_ho_t, delta_output, active, lr)
        step_input_layer(pixels, sample, scale, w_own_t, delta_hidden, lr, x, x_next, hidden_next)
        x, x_next = x_next, x  # the next sample's input and pre-activation (unused after the last)
        hidden, hidden_next = hidden_next, hidden
    return 0


def _padded(n: int, dtype: np.dtype[np.floating]) -> int:
    """n rounded up to whole vectors of dtype."""
    lanes = simd.lanes(dtype)
    return -(-n // lanes) * lanes


def thread_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    lr: FloatArray,
    threads: int,
) -> tuple[FloatArray, FloatArray]:
    """One epoch of `_sgd_units` on 1 or 2 threads; returns the new (W_ih, W_ho), C order.

    Two threads never spin forever: if the helper cannot start, this raises before spinning;
    if either thread raises, it sets the abort flag, the other stops waiting, and the error is
    re-raised.
    """
    dtype = scale.dtype
    n_hidden, n_outputs = w_input_hidden.shape[0], w_hidden_output.shape[0]
    bounds = [0, n_hidden // 2, n_hidden] if threads == 2 else [0, n_hidden]
    parts = list(itertools.pairwise(bounds))
    width = _padded(max(stop - start for start, stop in parts), dtype)
    slabs = [np.zeros((w_input_hidden.shape[1], width), dtype=dtype) for _ in parts]
    for slab, (start, stop) in zip(slabs, parts, strict=True):
        slab[:, : stop - start] = w_input_hidden[start:stop].T
    w_ho_t = np.zeros((n_hidden, _padded(n_outputs, dtype)), dtype=dtype)
    w_ho_t[:, :n_outputs] = w_hidden_output.T
    copies = [w_ho_t] + [w_ho_t.copy() for _ in parts[1:]]
    activations = np.zeros((2, n_hidden), dtype=dtype)
    flags = np.zeros(FLAG_SLOTS, dtype=np.int64)

    def run(thread: int) -> int:
        start, stop = parts[thread]
        return int(
            _sgd_units(
                thread, len(parts), start, stop - start, pixels, labels, scale, slabs[thread],
                copies[thread], n_outputs, activations, lr, flags,
            )
        )  # fmt: skip

    status = _run_threads(run, len(parts), flags)
    if status != 0:
        raise RuntimeError("the engine's helper thread stopped before the end of the epoch")
    w_ih = np.empty((n_hidden, w_input_hidden.shape[1]), dtype=dtype)
    for slab, (start, stop) in zip(slabs, parts, strict=True):
        w_ih[start:stop] = slab[:, : stop - start].T
    return w_ih, np.ascontiguousarray(w_ho_t[:, :n_outputs].T)


def _run_threads(run: Callable[[int], int], n_threads: int, flags: np.ndarray) -> int:
    """run(0) on this thread and, with two, run(1) on a helper; the first error is re-raised."""
    if n_threads == 1:
        return run(0)
    errors: list[BaseException] = []

    def helper() -> None:
        try:
            run(1)
        except BaseException as error:  # handed to the main thread below
            flags[ABORT] = 1
            errors.append(error)

    worker = threading.Thread(target=helper, name="mnistnn-engine-1", daemon=True)
    worker.start()  # raises if the thread cannot start: nothing is waiting for it yet
    try:
        status = run(0)
    except BaseException:
        flags[ABORT] = 1
        raise
    finally:
        worker.join()
    if errors:
        raise errors[0]
    return status
