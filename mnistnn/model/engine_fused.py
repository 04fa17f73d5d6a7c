"""The fused sweep over W_ih^T in the per-sample loops: one sample's update, the next's forward.

Both `engine._sgd_epoch` (one thread) and `engine_threads._sgd_epoch_half` (each of two threads,
on its own columns) call it once per sample, inlined.
"""

from __future__ import annotations

from numba import njit

from mnistnn.types import FloatArray


@njit(cache=True, nogil=True, inline="always")
def _update_and_forward(
    w_t: FloatArray,
    delta_hidden: FloatArray,
    x: FloatArray,
    x_next: FloatArray,
    lr: float,
    hidden_next: FloatArray,
) -> None:  # pragma: no cover - compiled
    """w_t[k, :] += lr * (delta_hidden * x[k]); hidden_next += w_t[k, :] * x_next[k], k in order.

    Four rows per sweep over j: each hidden_next[j] is loaded and stored once per four rows
    while its additions stay in k order, so the sums are bit-identical to the plain loop.
    """
    n_inputs, n_hidden = w_t.shape
    k = 0
    while k + 4 <= n_inputs:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        n0, n1, n2, n3 = x_next[k], x_next[k + 1], x_next[k + 2], x_next[k + 3]
        for j in range(n_hidden):
            d = delta_hidden[j]
            w0 = w_t[k, j] + lr * (d * x0)
            w1 = w_t[k + 1, j] + lr * (d * x1)
            w2 = w_t[k + 2, j] + lr * (d * x2)
            w3 = w_t[k + 3, j] + lr * (d * x3)
            w_t[k, j] = w0
            w_t[k + 1, j] = w1
            w_t[k + 2, j] = w2
            w_t[k + 3, j] = w3
            total = hidden_next[j]
            total += w0 * n0
            total += w1 * n1
            total += w2 * n2
            total += w3 * n3
            hidden_next[j] = total
        k += 4
    while k < n_inputs:
        xk = x[k]
        xn = x_next[k]
        for j in range(n_hidden):
            weight = w_t[k, j] + lr * (delta_hidden[j] * xk)
            w_t[k, j] = weight
            hidden_next[j] += weight * xn
        k += 1
