"""The two-thread per-sample loop: the hidden units split in half, one atomic rendezvous a sample.

`two_thread_epoch` runs `_sgd_epoch_half` on the calling thread (units 0 .. h//2 - 1) and on one
helper thread (the rest). Each owns half the columns of W_ih^T, padded to `_PAD` columns, so its
half of the weights stays in its own core's L2. The threads meet once per sample on a pair of
int64 flags, stored and loaded with llvmlite atomic intrinsics (numba has no atomics on arrays in
nopython mode). Every sum keeps its order, so the weights are bit-identical to `engine`'s
one-thread loop.
"""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic as numba_intrinsic

from mnistnn.model.engine_fused import (
    forward_input,
    load_input,
    output_deltas,
    step_input_layer,
)
from mnistnn.types import FloatArray, LabelArray, PixelArray

_SPINS_BEFORE_YIELD = 100  # pause-spins (~50 ns each) before a waiting thread yields its CPU
_LINE = 16  # int64 slots between two flags: each flag on its own pair of cache lines
_ABORT = 2 * _LINE  # flags[_ABORT] != 0: the other thread failed, stop waiting
_PAD = 16  # each thread's W_ih^T columns padded to a multiple of 16: vector loops, no tail
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_POSIX = os.name == "posix"


# -- the rendezvous: atomic flags (numba has no atomics on arrays in nopython mode) ------------
# Each intrinsic is typed by numba (`types.int64(...)`) and emits its LLVM IR itself.
intrinsic: Callable[[Callable[..., Any]], Any] = numba_intrinsic


def _flag_pointer(context: Any, builder: Any, signature: Any, args: Any) -> Any:
    array_type = signature.args[0]
    array = context.make_array(array_type)(context, builder, args[0])
    return cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, array_type, array, [args[1]]
    )


@intrinsic
def _load_acquire(typingctx: Any, flags: Any, index: Any) -> Any:  # pragma: no cover
    """flags[index] as an acquire load: no later access moves before it, and it is never hoisted
    out of a spin loop (a plain load may be)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        pointer = _flag_pointer(context, builder, signature, args)
        return builder.load_atomic(pointer, ordering="acquire", align=8)

    return types.int64(flags, index), codegen


@intrinsic
def _store_release(typingctx: Any, flags: Any, index: Any, value: Any) -> Any:  # pragma: no cover
    """flags[index] = value as a release store: every earlier write is visible before it."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        pointer = _flag_pointer(context, builder, signature, args)
        builder.store_atomic(args[2], pointer, ordering="release", align=8)
        return context.get_dummy_value()

    return types.none(flags, index, types.int64), codegen


@intrinsic
def _spin_pause(typingctx: Any) -> Any:  # pragma: no cover
    """The x86 `pause` hint inside a spin loop (nothing elsewhere)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if _X86:
            function_type = ir.FunctionType(ir.VoidType(), [])
            pause = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=function_type)
            builder.call(pause, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _yield_cpu(typingctx: Any) -> Any:  # pragma: no cover
    """sched_yield(): let the other thread (or another process) have this CPU (POSIX only)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if _POSIX:
            function_type = ir.FunctionType(ir.IntType(32), [])
            function = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
                builder.module, function_type, "sched_yield"
            )
            builder.call(function, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True, nogil=True, inline="always")
def _rendezvous(flags: np.ndarray, thread: int, arrival: int) -> bool:  # pragma: no cover
    """Publish `arrival` as this thread's count, wait until the other thread's reaches it.

    Each thread writes only its own flag and the counts only grow, so one store and a spin on
    one load make a barrier (no read-modify-write, no sense reversal). The release store makes
    this thread's earlier writes visible to the other once it has seen the count; the acquire
    load does the same the other way. False when the other thread aborted.
    """
    _store_release(flags, thread * _LINE, arrival)
    other = (1 - thread) * _LINE
    spins = 0
    while _load_acquire(flags, other) < arrival:
        if _load_acquire(flags, _ABORT) != 0:
            return False
        spins += 1
        if spins < _SPINS_BEFORE_YIELD:
            _spin_pause()
        else:
            _yield_cpu()
    return True


@njit(cache=True, nogil=True)
def _sgd_epoch_half(
    thread: int,
    first: int,
    n_own: int,
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_own_t: FloatArray,
    w_ho_t: FloatArray,
    activations: FloatArray,
    learning_rate: FloatArray,
    flags: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """One thread's half of `_sgd_epoch`: the n_own hidden units from `first` on.

    thread 0 or 1; w_own_t (784, width >= n_own) this thread's columns of W_ih^T (no other
    thread touches them), zero beyond n_own: the padding keeps the row loops free of a scalar
    tail, and a zero column stays zero (its hidden delta is zero); w_ho_t (2, hidden, 10)
    W_ho^T double-buffered: sample s reads w_ho_t[s % 2] and writes w_ho_t[(s + 1) % 2];
    activations (2, hidden) the hidden layer, double-buffered the same way; flags (3 * _LINE,)
    int64 zeros, shared by the two threads. Returns 0, or 1 when the other thread aborted.

    Per sample, each thread: the sigmoid of its half of the hidden layer into activations[s % 2];
    the rendezvous (both halves are there); the output layer and its error from all of W_ho and
    the hidden layer (both threads compute them, the same operations in the same order, so the
    same bits); the hidden error, the W_ho update and the W_ih update of its own units only,
    fused with its half of the next sample's forward pass. One rendezvous a sample suffices: a
    thread passes rendezvous s + 1 only once the other has finished sample s, so a buffer of
    parity s % 2 is rewritten (at sample s + 2) only after the other thread's last read of it.

    Sum orders, as `_sgd_epoch`: hidden[j] over k = 0..783 (per column, so splitting the columns
    changes nothing); output[i] over j = 0..hidden - 1 (the full sum, on each thread); the hidden
    error over i = 0..9.
    """
    n_samples, n_inputs = pixels.shape
    width = w_own_t.shape[1]
    n_hidden, n_outputs = w_ho_t.shape[1], w_ho_t.shape[2]
    lr = learning_rate[0]
    one = scale.dtype.type(1.0)
    x = np.empty(n_inputs, dtype=scale.dtype)
    x_next = np.empty(n_inputs, dtype=scale.dtype)
    hidden = np.zeros(width, dtype=scale.dtype)  # pre-activation of the own units
    hidden_next = np.zeros(width, dtype=scale.dtype)
    output = np.empty(n_outputs, dtype=scale.dtype)
    output_error = np.empty(n_outputs, dtype=scale.dtype)
    delta_output = np.empty(n_outputs, dtype=scale.dtype)
    delta_hidden = np.zeros(width, dtype=scale.dtype)  # zero on the padding
    if n_samples == 0:
        return 0
    load_input(pixels, 0, scale, x)
    forward_input(w_own_t, x, hidden)  # the first sample's, own units
    for sample in range(n_samples):
        parity = sample & 1
        active = activations[parity]
        w_ho = w_ho_t[parity]
        w_ho_next = w_ho_t[1 - parity]
        for j in range(n_own):
            active[first + j] = one / (one + np.exp(-hidden[j]))
        if not _rendezvous(flags, thread, sample + 1):
            return 1
        # output layer, all units: output[i] = sum over j in order, as the one-thread loop
        for i in range(n_outputs):
            output[i] = w_ho[0, i] * active[0]
        for j in range(1, n_hidden):
            aj = active[j]
            for i in range(n_outputs):
                output[i] += w_ho[j, i] * aj
        for i in range(n_outputs):
            output[i] = one / (one + np.exp(-output[i]))
        output_deltas(output, labels, sample, output_error, delta_output)
        # own units: hidden error from the pre-update W_ho, then W_ho's update into the other
        # buffer (W_ho^T row j is W_ho column j: only this unit's weights)
        for j in range(n_own):
            unit = first + j
            error_hidden = w_ho[unit, 0] * output_error[0]
            for i in range(1, n_outputs):
                error_hidden += w_ho[unit, i] * output_error[i]
            aj = active[unit]
            delta_hidden[j] = error_hidden * aj * (one - aj)
            for i in range(n_outputs):
                w_ho_next[unit, i] = w_ho[unit, i] + lr * (delta_output[i] * aj)
        step_input_layer(pixels, sample, scale, w_own_t, delta_hidden, lr, x, x_next, hidden_next)
        x, x_next = x_next, x  # the next sample's input and pre-activation (unused after the last)
        hidden, hidden_next = hidden_next, hidden
    return 0


def two_thread_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    lr: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """`_sgd_epoch_half` on this thread (units 0 .. h//2 - 1) and a helper thread (the rest).

    Never spins forever: if the helper cannot start, this raises before spinning; if either
    thread raises, it sets the abort flag, the other stops waiting, and the error is re-raised.
    """
    n_hidden, n_outputs = w_input_hidden.shape[0], w_hidden_output.shape[0]
    split = n_hidden // 2
    counts = (split, n_hidden - split)
    width = -(-counts[1] // _PAD) * _PAD
    slabs = [np.zeros((w_input_hidden.shape[1], width), dtype=scale.dtype) for _ in counts]
    slabs[0][:, : counts[0]] = w_input_hidden[:split].T
    slabs[1][:, : counts[1]] = w_input_hidden[split:].T
    w_ho_t = np.empty((2, n_hidden, n_outputs), dtype=scale.dtype)
    w_ho_t[0] = w_hidden_output.T
    activations = np.zeros((2, n_hidden), dtype=scale.dtype)
    flags = np.zeros(3 * _LINE, dtype=np.int64)
    shared = (pixels, labels, scale)
    errors: list[BaseException] = []

    def helper() -> None:
        try:
            _sgd_epoch_half(1, split, counts[1], *shared, slabs[1], w_ho_t, activations, lr, flags)
        except BaseException as error:  # handed to the main thread below
            flags[_ABORT] = 1
            errors.append(error)

    worker = threading.Thread(target=helper, name="mnistnn-engine-1", daemon=True)
    worker.start()  # raises if the thread cannot start: nothing is waiting for it yet
    try:
        status = _sgd_epoch_half(0, 0, counts[0], *shared, slabs[0], w_ho_t, activations, lr, flags)
    except BaseException:
        flags[_ABORT] = 1
        raise
    finally:
        worker.join()
    if errors:
        raise errors[0]
    if status != 0:
        raise RuntimeError("the engine's helper thread stopped before the end of the epoch")
    w_ih = np.empty_like(w_input_hidden, dtype=scale.dtype, order="C")
    w_ih[:split] = slabs[0][:, : counts[0]].T
    w_ih[split:] = slabs[1][:, : counts[1]].T
    return w_ih, np.ascontiguousarray(w_ho_t[len(pixels) % 2].T)
