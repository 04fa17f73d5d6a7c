"""Compiled training loops: the reference per-sample SGD without Python overhead per sample.

The reference loop spends most of its time in numpy call overhead (a dozen small array ops per
sample). Here one numba function runs a whole epoch. To keep the hot loops vectorisable without
reordering any floating-point sum, the input->hidden weights are held transposed, (784, hidden):
the forward pass accumulates `hidden += x[k] * w_t[k, :]` over k in order, and the update
`w_t[k, :] += lr * (delta_hidden * x[k])` keeps the reference's operation order exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mnistnn.model.maths import sigmoid
from mnistnn.types import FloatArray, LabelArray, PixelArray


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


@njit(cache=True, nogil=True)
def _sgd_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden_t: FloatArray,
    w_hidden_output: FloatArray,
    learning_rate: FloatArray,
) -> None:  # pragma: no cover - compiled
    """One epoch of per-sample SGD, updating both weight arrays in place.

    pixels (n, 784) uint8; labels (n,) uint8; scale (256,) the input value of each pixel level;
    w_input_hidden_t (784, hidden); w_hidden_output (10, hidden); learning_rate (1,) of the dtype.

    The W_ih update of sample s and the forward pass of sample s+1 share one sweep over W_ih
    (each row is updated, then used): the same operations in the same order as two sweeps,
    with half the memory traffic.
    """
    n_samples, n_inputs = pixels.shape
    n_hidden = w_input_hidden_t.shape[1]
    n_outputs = w_hidden_output.shape[0]
    lr = learning_rate[0]
    one = scale.dtype.type(1.0)
    low = scale.dtype.type(0.01)
    x = np.empty(n_inputs, dtype=scale.dtype)
    x_next = np.empty(n_inputs, dtype=scale.dtype)
    hidden = np.zeros(n_hidden, dtype=scale.dtype)  # pre-activation, then activation
    hidden_next = np.zeros(n_hidden, dtype=scale.dtype)
    output = np.empty(n_outputs, dtype=scale.dtype)
    output_error = np.empty(n_outputs, dtype=scale.dtype)
    delta_output = np.empty(n_outputs, dtype=scale.dtype)
    delta_hidden = np.empty(n_hidden, dtype=scale.dtype)
    if n_samples == 0:
        return
    for k in range(n_inputs):
        x[k] = scale[pixels[0, k]]
    for k in range(n_inputs):  # forward of the first sample: hidden = W_ih @ x
        xk = x[k]
        for j in range(n_hidden):
            hidden[j] += w_input_hidden_t[k, j] * xk
    for sample in range(n_samples):
        # forward: hidden = sigmoid(W_ih @ x), output = sigmoid(W_ho @ hidden)
        for j in range(n_hidden):
            hidden[j] = one / (one + np.exp(-hidden[j]))
        for i in range(n_outputs):
            total = w_hidden_output[i, 0] * hidden[0]
            for j in range(1, n_hidden):
                total += w_hidden_output[i, j] * hidden[j]
            output[i] = one / (one + np.exp(-total))
        # backward: errors from the layer outputs; the hidden error uses the pre-update W_ho
        # and, as in the reference, no sigmoid derivative
        for i in range(n_outputs):
            target = one if i == labels[sample] else low
            output_error[i] = target - output[i]
            delta_output[i] = output_error[i] * output[i] * (one - output[i])
        for j in range(n_hidden):
            error_hidden = w_hidden_output[0, j] * output_error[0]
            for i in range(1, n_outputs):
                error_hidden += w_hidden_output[i, j] * output_error[i]
            delta_hidden[j] = error_hidden * hidden[j] * (one - hidden[j])
        # updates, in the reference's order: W += lr * (delta outer activation)
        for i in range(n_outputs):
            di = delta_output[i]
            for j in range(n_hidden):
                w_hidden_output[i, j] += lr * (di * hidden[j])
        if sample + 1 < n_samples:
            for k in range(n_inputs):
                x_next[k] = scale[pixels[sample + 1, k]]
            hidden_next[:] = 0
            _update_and_forward(w_input_hidden_t, delta_hidden, x, x_next, lr, hidden_next)
            x, x_next = x_next, x
            hidden, hidden_next = hidden_next, hidden
        else:
            for k in range(n_inputs):
                xk = x[k]
                for j in range(n_hidden):
                    w_input_hidden_t[k, j] += lr * (delta_hidden[j] * xk)


def sgd_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    learning_rate: float,
) -> tuple[FloatArray, FloatArray]:
    """Run one per-sample SGD epoch; return the new (w_input_hidden, w_hidden_output)."""
    w_input_hidden_t = np.ascontiguousarray(w_input_hidden.T)
    w_hidden_output = np.ascontiguousarray(w_hidden_output).copy()
    lr = np.array([learning_rate], dtype=scale.dtype)
    _sgd_epoch(
        np.ascontiguousarray(pixels),
        np.ascontiguousarray(labels),
        scale,
        w_input_hidden_t,
        w_hidden_output,
        lr,
    )
    return np.ascontiguousarray(w_input_hidden_t.T), w_hidden_output


def minibatch_epoch(
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    learning_rate: float,
    batch_size: int,
) -> tuple[FloatArray, FloatArray]:
    """One epoch of mini-batch SGD with BLAS products, in file order; returns new weights.

    Each batch sums the reference's per-sample updates computed at the same weights, so
    `batch_size=1` is the reference algorithm (up to summation order) and larger batches are the
    usual mini-batch generalisation. The last batch may be smaller.
    """
    dtype = scale.dtype
    w_ih = np.array(w_input_hidden, dtype=dtype, order="C")
    w_ho = np.array(w_hidden_output, dtype=dtype, order="C")
    lr = dtype.type(learning_rate)
    one = dtype.type(1.0)
    eye = np.full((w_ho.shape[0], w_ho.shape[0]), dtype.type(0.01), dtype=dtype)
    np.fill_diagonal(eye, one)
    for start in range(0, pixels.shape[0], batch_size):
        x = scale[pixels[start : start + batch_size]]  # (b, 784)
        targets = eye[labels[start : start + batch_size]]  # (b, 10)
        hidden = sigmoid(x @ w_ih.T)  # (b, hidden)
        output = sigmoid(hidden @ w_ho.T)  # (b, 10)
        output_error = targets - output
        hidden_error = output_error @ w_ho  # (b, hidden), pre-update weights
        w_ho += lr * ((output_error * output * (one - output)).T @ hidden)
        w_ih += lr * ((hidden_error * hidden * (one - hidden)).T @ x)
    return w_ih, w_ho
