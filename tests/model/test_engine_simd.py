"""The SIMD row sweeps are the plain loops, bit for bit, at every width (whole vectors, strips,
the one-column tail) and for empty inputs."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from mnistnn.model import engine_simd as simd


@njit
def _update_and_forward(w, delta, x, lr, a, acc):  # type: ignore[no-untyped-def]
    simd.update_and_forward(w, delta, x, lr, a, acc)


@njit
def _update(w, delta, x, lr):  # type: ignore[no-untyped-def]
    simd.update(w, delta, x, lr)


@njit
def _forward(w, a, acc):  # type: ignore[no-untyped-def]
    simd.forward(w, a, acc)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sweeps_are_the_plain_loops_at_every_width(dtype: type) -> None:
    rng = np.random.default_rng(1)
    lr = dtype(0.05)
    widths = range(3 * simd.lanes(dtype) * 6 + 3)  # past one full strip, every rest and tail
    for width in widths:
        for rows in (0, 1, 7):
            w = rng.standard_normal((rows, width)).astype(dtype)
            delta = rng.standard_normal(width).astype(dtype)
            x, a = rng.random(rows).astype(dtype), rng.random(rows).astype(dtype)
            acc = rng.random(width).astype(dtype)
            want_w, want_acc = w.copy(), acc.copy()
            for k in range(rows):  # the order every sweep promises
                want_w[k] = want_w[k] + lr * (delta * x[k])
                want_acc = want_acc + want_w[k] * a[k]
            _update_and_forward(w, delta, x, lr, a, acc)
            assert np.array_equal(w, want_w) and np.array_equal(acc, want_acc), (width, rows)

            total = rng.random(width).astype(dtype)
            want_total = total.copy()
            for k in range(rows):
                want_total = want_total + w[k] * a[k]
            _forward(w, a, total)
            assert np.array_equal(total, want_total), (width, rows)

            want_w = w.copy()
            for k in range(rows):
                want_w[k] = want_w[k] + lr * (delta * x[k])
            _update(w, delta, x, lr)
            assert np.array_equal(w, want_w), (width, rows)


def test_a_sweep_refuses_rows_that_are_not_contiguous() -> None:
    from numba.core.errors import TypingError

    w = np.zeros((4, 16))
    with pytest.raises(TypingError):
        _forward(w[:, ::2], np.ones(4), np.zeros(8))


def test_the_loop_cache_key_covers_its_kernels() -> None:
    """numba re-compiles `_sgd_units` only when engine_threads.py changes: its KERNEL_SOURCES
    must follow the kernel files it inlines."""
    import hashlib
    from pathlib import Path

    from mnistnn.model import engine_threads

    folder = Path(engine_threads.__file__).parent
    digest = hashlib.sha256()
    for name in ("engine_fused.py", "engine_simd.py", "engine_sync.py"):
        digest.update((folder / name).read_bytes())
    expected = digest.hexdigest()[:16]
    assert expected == engine_threads.KERNEL_SOURCES, (
        f"set KERNEL_SOURCES = {expected!r} in engine_threads.py: a kernel file changed"
    )
