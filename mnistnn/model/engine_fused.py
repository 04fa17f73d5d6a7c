"""The per-sample kernels of the SGD loop: input lookup, output deltas, the fused W_ih sweep.

`engine_threads._sgd_units` (all hidden units on one thread, or half of them on each of two) calls
these, inlined. Every sum over the inputs runs k = 0..783 in order, column by column
(`engine_simd`), so splitting the columns between threads changes no bit of the weights.
`inline="always"` makes numba paste them into the loop at the IR level, so the compiled loop is
the one written out by hand, with no call per sample.
"""

from __future__ import annotations

from numba import njit

from mnistnn.model import engine_simd as simd
from mnistnn.types import FloatArray, LabelArray, PixelArray


@njit(cache=True, nogil=True, inline="always")
def load_input(
    pixels: PixelArray, row: int, scale: FloatArray, x: FloatArray
) -> None:  # pragma: no cover - compiled
    """x[k] = scale[pixels[row, k]]: one sample's input layer."""
    for k in range(x.shape[0]):
        x[k] = scale[pixels[row, k]]


@njit(cache=True, nogil=True, inline="always")
def output_deltas(
    output: FloatArray,
    n_outputs: int,
    labels: LabelArray,
    sample: int,
    output_error: FloatArray,
    delta_output: FloatArray,
) -> None:  # pragma: no cover - compiled
    """output_error = target - output, delta_output = output_error * output * (1 - output).

    The first n_outputs entries (the rest is vector padding, left as it is: zero). The target
    is the reference's: 1.0 for the sample's label, 0.01 for the other digits.
    """
    one = output.dtype.type(1.0)
    low = output.dtype.type(0.01)
    for i in range(n_outputs):
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

    w_t[k, :] += lr * (delta_hidden * x[k]), k in order; not the last sample: the same sweep
    adds w_t[k, :] * x_next[k] into hidden_next (zeroed here), the next sample's pre-activation,
    with the row just updated, so each row is read and written once a sample (the caller swaps
    x with x_next and hidden with hidden_next).
    """
    if sample + 1 < pixels.shape[0]:
        load_input(pixels, sample + 1, scale, x_next)
        hidden_next[:] = 0
        simd.update_and_forward(w_t, delta_hidden, x, lr, x_next, hidden_next)
    else:
        simd.update(w_t, delta_hidden, x, lr)
