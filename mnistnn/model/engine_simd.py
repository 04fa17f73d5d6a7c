"""Row sweeps of the per-sample loop, written with explicit SIMD vectors.

Every sweep walks the rows of a C-contiguous (rows, width) weight array in order, k = 0, 1, ...,
and treats its columns as independent lanes:

    update:   w[k, :] += lr * (delta * x[k])
    forward:  acc += w[k, :] * a[k]            (after the update, with both)

Each lane's operations are the scalar loop's, in its order (no fused multiply-add, no reordered
sum), so the results are bit-identical to `for k: for j: ...`. Written in numba, the same loop
(hidden units innermost) is vectorised by LLVM behind a run-time aliasing check and a scalar
tail at every row: at 48 or 88 columns those cost as much as the arithmetic. Here the columns
are cut into strips of up to `_STRIP` vectors; a strip's accumulators and deltas stay in
registers for the whole sweep over the rows, so a row costs its loads, stores and arithmetic
only.

Any width works; the columns past the last whole vector go one at a time, so the callers pad
their weights to a multiple of `lanes(dtype)` with zero columns (a zero column with a zero
delta stays zero and adds zero).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils

from mnistnn.model.engine_sync import intrinsic

VECTOR_BYTES = 32  # one AVX2 register; LLVM splits it on narrower machines (same results)
_STRIP = 6  # vectors per strip: 6 accumulators + 6 deltas + 3 broadcasts fit 16 registers

_REST_SIZES = [1 << i for i in reversed(range(_STRIP.bit_length())) if 1 << i < _STRIP]
"""The strips after the full ones, each used once or not at all: any rest below _STRIP vectors."""


def lanes(dtype: np.dtype[Any] | type) -> int:
    """Elements of `dtype` in one vector: the widths that sweep fastest are its multiples."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


class _Sweep:
    """IR for one sweep over the rows, emitted into the calling numba function."""

    def __init__(self, context: Any, builder: Any, dtype: Any) -> None:
        self.builder = builder
        self.element = context.get_value_type(dtype)
        self.size = context.get_abi_sizeof(self.element)
        self.lanes = VECTOR_BYTES // self.size
        self.i64 = ir.IntType(64)

    def const(self, value: int) -> Any:
        return ir.Constant(self.i64, value)

    def splat(self, value: Any, lanes: int) -> Any:
        """A vector of `value` in every lane."""
        builder = self.builder
        undefined = ir.Constant(ir.VectorType(self.element, lanes), ir.Undefined)
        first = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        return builder.shuffle_vector(first, undefined, mask)

    def vector_at(self, pointer: Any, index: Any, lanes: int) -> Any:
        """A vector pointer to pointer[index:index + lanes]."""
        address = self.builder.gep(pointer, [index])
        return self.builder.bitcast(address, ir.VectorType(self.element, lanes).as_pointer())

    def load(self, pointer: Any) -> Any:
        return self.builder.load(pointer, align=self.size)

    def store(self, value: Any, pointer: Any) -> None:
        self.builder.store(value, pointer, align=self.size)

    def emit(
        self,
        weights: Any,
        rows: Any,
        width: Any,
        stride: Any,
        update: tuple[Any, Any, Any] | None,
        forward: tuple[Any, Any] | None,
    ) -> None:
        """All columns: strips of _STRIP vectors, at most one of each of _REST_SIZES, then any
        columns past the last whole vector one at a time (none when the caller pads).

        rows, width, stride (elements from one row to the next): the weights' shape;
        update = (delta, x, lr), pointers and the rate; forward = (a, acc), pointers.
        """
        builder = self.builder
        n_vectors = builder.sdiv(width, self.const(self.lanes))
        n_full = builder.sdiv(n_vectors, self.const(_STRIP))
        column = builder.mul(n_full, self.const(_STRIP * self.lanes))
        operands = (weights, rows, stride, update, forward)
        self._strips(_STRIP, self.lanes, self.const(0), n_full, operands)
        rest = builder.srem(n_vectors, self.const(_STRIP))
        for size in _REST_SIZES:
            fits = builder.icmp_signed(">=", rest, self.const(size))
            count = builder.zext(fits, self.i64)
            self._strips(size, self.lanes, column, count, operands)
            step = builder.mul(count, self.const(size))
            rest = builder.sub(rest, step)
            column = builder.add(column, builder.mul(step, self.const(self.lanes)))
        self._strips(1, 1, column, builder.sub(width, column), operands)

    def _strips(
        self,
        size: int,
        lanes: int,
        first_column: Any,
        count: Any,
        operands: tuple[Any, Any, Any, tuple[Any, Any, Any] | None, tuple[Any, Any] | None],
    ) -> None:
        """`count` strips of `size` vectors of `lanes` from `first_column` on, each swept over
        every row; operands as `emit`'s (weights, rows, stride, update, forward)."""
        builder = self.builder
        weights, rows, stride, update, forward = operands
        with cgutils.for_range(builder, count) as strip:
            start = builder.add(first_column, builder.mul(strip.index, self.const(size * lanes)))
            columns = [builder.add(start, self.const(b * lanes)) for b in range(size)]
            deltas: list[Any] = []
            if update is not None:
                delta, x, lr = update
                deltas = [self.load(self.vector_at(delta, c, lanes)) for c in columns]
                lr_vector = self.splat(lr, lanes)
            slots: list[Any] = []
            if forward is not None:
                a, acc = forward
                vector = ir.VectorType(self.element, lanes)
                for c in columns:  # accumulators in stack slots: LLVM keeps them in registers
                    slot = cgutils.alloca_once(builder, vector)  # type: ignore[no-untyped-call]
                    self.store(self.load(self.vector_at(acc, c, lanes)), slot)
                    slots.append(slot)
            with cgutils.for_range(builder, rows) as row:
                offset = builder.mul(row.index, stride)
                if update is not None:
                    x_row = self.splat(builder.load(builder.gep(x, [row.index])), lanes)
                if forward is not None:
                    a_row = self.splat(builder.load(builder.gep(a, [row.index])), lanes)
                for b, c in enumerate(columns):
                    pointer = self.vector_at(weights, builder.add(offset, c), lanes)
                    w = self.load(pointer)
                    if update is not None:
                        w = builder.fadd(w, builder.fmul(lr_vector, builder.fmul(deltas[b], x_row)))
                        self.store(w, pointer)
                    if forward is not None:
                        total = builder.fadd(self.load(slots[b]), builder.fmul(w, a_row))
                        self.store(total, slots[b])
            if forward is not None:
                for slot, c in zip(slots, columns, strict=True):
                    self.store(self.load(slot), self.vector_at(acc, c, lanes))


def _shape(context: Any, builder: Any, array_type: Any, value: Any, itemsize: int) -> Any:
    """(rows, columns, row stride in elements) of a 2-D array whose rows are contiguous."""
    array = context.make_array(array_type)(context, builder, value)
    rows, width = cgutils.unpack_tuple(builder, array.shape, 2)  # type: ignore[no-untyped-call]
    stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]  # type: ignore[no-untyped-call]
    return rows, width, builder.sdiv(stride, ir.Constant(ir.IntType(64), itemsize))


def _contiguous(*arrays: Any) -> bool:
    """Typing: every array's last axis is contiguous (a 2-D C array or a 1-D one)."""
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


def _codegen(with_update: bool, with_forward: bool) -> Callable[..., Any]:
    """The code of a sweep whose arguments are (w, [delta, x, lr], [a, acc])."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        sweep = _Sweep(context, builder, signature.args[0].dtype)
        operands = [
            context.make_array(kind)(context, builder, value).data
            if isinstance(kind, types.Array)
            else value
            for kind, value in zip(signature.args, args, strict=True)
        ]
        rows, width, stride = _shape(context, builder, signature.args[0], args[0], sweep.size)
        update = tuple(operands[1:4]) if with_update else None
        forward = tuple(operands[-2:]) if with_forward else None
        sweep.emit(operands[0], rows, width, stride, update, forward)
        return context.get_dummy_value()

    return codegen


@intrinsic
def update_and_forward(
    typingctx: Any, w: Any, delta: Any, x: Any, lr: Any, a: Any, acc: Any
) -> Any:  # pragma: no cover - compiled
    """w[k, :] += lr * (delta * x[k]); acc += w[k, :] * a[k], k in order (one sweep)."""
    if not _contiguous(w, delta, x, a, acc):
        return None
    return types.none(w, delta, x, lr, a, acc), _codegen(True, True)


@intrinsic
def update(typingctx: Any, w: Any, delta: Any, x: Any, lr: Any) -> Any:  # pragma: no cover
    """w[k, :] += lr * (delta * x[k]), k in order."""
    if not _contiguous(w, delta, x):
        return None
    return types.none(w, delta, x, lr), _codegen(True, False)


@intrinsic
def forward(typingctx: Any, w: Any, a: Any, acc: Any) -> Any:  # pragma: no cover - compiled
    """acc += w[k, :] * a[k], k in order."""
    if not _contiguous(w, a, acc):
        return None
    return types.none(w, a, acc), _codegen(False, True)
