"""The two threads' rendezvous: one atomic store and a spin on one load, per sample.

numba has no atomics on arrays in nopython mode, so the acquire load and the release store are
llvmlite intrinsics, with the x86 `pause` hint and `sched_yield()` for the wait.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic as numba_intrinsic

SPINS_BEFORE_YIELD = 100  # pause-spins (~50 ns each) before a waiting thread yields its CPU
LINE = 16  # int64 slots between two flags: each flag on its own pair of cache lines
ABORT = 2 * LINE  # flags[ABORT] != 0: the other thread failed, stop waiting
FLAG_SLOTS = 3 * LINE  # the flags array: np.zeros(FLAG_SLOTS, dtype=np.int64)
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
def rendezvous(flags: np.ndarray, thread: int, arrival: int) -> bool:  # pragma: no cover
    """Publish `arrival` as this thread's count, wait until the other thread's reaches it.

    Each thread writes only its own flag and the counts only grow, so one store and a spin on
    one load make a barrier (no read-modify-write, no sense reversal). The release store makes
    this thread's earlier writes visible to the other once it has seen the count; the acquire
    load does the same the other way. False when the other thread aborted.
    """
    _store_release(flags, thread * LINE, arrival)
    other = (1 - thread) * LINE
    spins = 0
    while _load_acquire(flags, other) < arrival:
        if _load_acquire(flags, ABORT) != 0:
            return False
        spins += 1
        if spins < SPINS_BEFORE_YIELD:
            _spin_pause()
        else:
            _yield_cpu()
    return True
