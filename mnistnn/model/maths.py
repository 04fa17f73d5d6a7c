"""The reference maths, each piece written once: input scale, targets, sigmoid, forward pass.

As in "Make Your Own Neural Network":
    x = pixel / 255 * 0.99 + 0.01          inputs in [0.01, 1.0], never 0 (which kills updates)
    t = 0.01 everywhere, 1.0 at the label  the targets of the sigmoid outputs
    hidden = sigmoid(W_ih @ x);  out = sigmoid(W_ho @ hidden)

Everything here is batched (rows are samples) and computed in the arrays' dtype. The compiled
per-sample loop in `mnistnn.model.engine` inlines the same maths for speed (it is handed the
`input_scale` table, writes sigmoid as 1 / (1 + exp(-z)) and the targets as 0.01 / 1.0);
`tests/model/test_network.py` and `tests/model/test_maths.py` check the two against each other
and against the book's code in `tests/reference.py`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, softmax

from mnistnn.config import N_CLASSES
from mnistnn.types import FloatArray, IntArray, PixelArray

#: Input value of pixel level 0; level 255 maps to INPUT_LOW + INPUT_SPAN = 1.0.
INPUT_LOW = 0.01
INPUT_SPAN = 0.99
#: Target output away from the label, and at the label.
TARGET_OFF = 0.01
TARGET_ON = 1.0


def input_scale(dtype: str | np.dtype[np.floating] = "float64") -> FloatArray:
    """(256,) input value of each pixel level: `pixel / 255 * 0.99 + 0.01`, as the reference."""
    levels = np.arange(256, dtype=np.float64)
    return np.asarray(levels / 255.0 * INPUT_SPAN + INPUT_LOW, dtype=dtype)


def scale_inputs(pixels: PixelArray, dtype: str = "float64") -> FloatArray:
    """(n, 784) uint8 pixels -> (n, 784) inputs in [0.01, 1.0]."""
    return input_scale(dtype)[pixels]


def targets(
    labels: IntArray,
    n_classes: int = N_CLASSES,
    dtype: str | np.dtype[np.floating] = "float64",
    on: float = TARGET_ON,
) -> FloatArray:
    """(n, classes) reference targets: 0.01 everywhere and `on` (1.0) at the label."""
    rows = np.asarray(labels, dtype=np.intp)
    out = np.full((rows.shape[0], n_classes), TARGET_OFF, dtype=dtype)
    out[np.arange(rows.shape[0]), rows] = on
    return out


def sigmoid(z: FloatArray) -> FloatArray:
    """Logistic function 1 / (1 + exp(-z)), computed in z's dtype (as scipy.special.expit)."""
    return expit(z)  # type: ignore[no-any-return]


def forward(
    w_input_hidden: FloatArray,
    w_hidden_output: FloatArray,
    x: FloatArray,
    *,
    bias_hidden: FloatArray | None = None,
    bias_output: FloatArray | None = None,
    output: str = "sigmoid",
) -> tuple[FloatArray, FloatArray]:
    """(hidden, outputs) of inputs x (n, 784): sigmoid(x @ W_ih.T [+ b_h]), then the outputs
    sigmoid(. @ W_ho.T [+ b_o]), or their softmax with `output="softmax"`.

    The one forward pass: the book's network (no biases, sigmoid) and the options beyond it
    (`optim`) both score and train through it.
    """
    hidden_inputs = x @ w_input_hidden.T
    if bias_hidden is not None:
        hidden_inputs = hidden_inputs + bias_hidden
    hidden = sigmoid(hidden_inputs)
    logits = hidden @ w_hidden_output.T
    if bias_output is not None:
        logits = logits + bias_output
    outputs = softmax(logits, axis=1) if output == "softmax" else sigmoid(logits)
    return hidden, outputs
