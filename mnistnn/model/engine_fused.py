"""The input-layer kernels of the per-sample loops, one copy of each for both loops.

`engine._sgd_epoch` (one thread, all hidden units) and `engine_threads._sgd_epoch_half` (each of
two threads, on its own columns of W_ih^T) both call these, inlined. Sharing them keeps the two
loops' sum orders the same by construction: every sum over the inputs runs k = 0..783 in order,
column by column, so splitting the columns between threads changes no bit of the weights.
`inline="always"` makes numba paste them into the loop at the IR level, so the compiled loop is
the one written out by hand, with no call per sample.
"""

from __future__ import annotations

from numba import njit

from mnistnn.types import FloatArray, LabelArray, PixelArray


@njit(cache=True, nogil=True, inline="always")
def load_input(
    pixels: PixelArray, row: int, scale: FloatArray, x: FloatArray
) -> None:  # pragma: no cover - compiled
    """x[k] = scale[pixels[row, k]]: one sample's input layer."""
    for k in range(x.shape[0]):
        x[k] = scale[pixels[row, k]]


@njit(cache=True, nogil=True, inline="always")
def forward_input(
    w_t: FloatArray, x: FloatArray, hidden: FloatArray
) -> None:  # pragma: no cover - compiled
    """hidden[j] += w_t[k, j] * x[k], k in order: the first sample's forward pass (hidden zero);
    every later one is fused with the previous sample's update (`step_input_layer`)."""
    for k in range(w_t.shape[0]):
        xk = x[k]
        for j in range(w_t.shape[1]):
            hidden[j] += w_t[k, j] * xk


@njit(cache=True, nogil=True, inline="always")
def output_deltas(
    output: FloatArray,
    labels: LabelArray,
    sample: int,
    output_error: FloatArray,
    delta_output: FloatArray,
) -> None:  # pragma: no cover - compiled
    """output_error = target - output, delta_output = output_error * output * (1 - output).

    The target is the reference's: 1.0 for the sample's label, 0.01 for the other digits.
    """
    one = output.dtype.type(1.0)
    low = output.dtype.type(0.01)
    for i in range(output.shape[0]):
        target = one if i == labels[sample] else low
        output_error[i] = target - output[i]
        delta_output[i] = output_error[i] * output[i] * (one - output[i])


@njit(cache=True, nogil=True, inline="always")
def step_input_layer(
    pixels: PixelArray,
    sample: int,
    scale: FloatArray,
    w_t: FloatArray,
    delta_hidden: FloatArray,
    lr: float,
    x: FloatArray,
    x_next: FloatArray,
    hidden_next: FloatArray,
) -> None:  # pragma: no cover - compiled
    """Sample `sample`'s W_ih update; fused with the next sample's forward pass when there is one.

    Not the last sample: x_next is the next sample's input and hidden_next its pre-activation
    (the caller swaps x with x_next and hidden with hidden_next). The last sample: the update
    alone, in the same order (w_t[k, :] += lr * (delta_hidden * x[k]), k in order).
    """
    if sample + 1 < pixels.shape[0]:
        load_input(pixels, sample + 1, scale, x_next)
        hidden_next[:] = 0
        _update_and_forward(w_t, delta_hidden, x, x_next, lr, hidden_next)
    else:
        for k in range(w_t.shape[0]):
            xk = x[k]
            for j in range(w_t.shape[1]):
                w_t[k, j] += lr * (delta_hidden[j] * xk)


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
