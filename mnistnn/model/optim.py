"""Beyond the book: what a one-hidden-layer network needs to reach 98.5%+ on MNIST.

Softmax output with cross-entropy loss, optional biases, mini-batch SGD with momentum (gradient
averaged over each batch), a learning-rate schedule, and per-epoch shuffling and augmentation.
Everything random is derived from (seed, epoch), never from state carried between epochs, so a
run resumed from a checkpoint regenerates exactly the epoch an uninterrupted run would have seen.

Parameters travel as one dict of arrays: `w_input_hidden` (hidden, 784), `w_hidden_output`
(10, hidden), `bias_hidden` (hidden,), `bias_output` (10,); the velocities of momentum use the
same keys prefixed by `velocity_`.
"""

from __future__ import annotations

import math

import numpy as np

from mnistnn.config import NetworkConfig
from mnistnn.model import maths
from mnistnn.model.augment import AugmentSettings, augment_epoch
from mnistnn.types import FloatArray, LabelArray, PixelArray

Params = dict[str, FloatArray]
WEIGHT_KEYS = ("w_input_hidden", "w_hidden_output", "bias_hidden", "bias_output")
SHUFFLE_TAG = 0x5EED_0001

AUGMENT_PRESETS = {
    "affine": AugmentSettings(elastic_fraction=0.0),
    "elastic": AugmentSettings(),
}


def learning_rate_at(config: NetworkConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (1-based) under the configured schedule.

    `step` divides by 10 after half and again after three quarters of `schedule_epochs`;
    `cosine` anneals from the base rate to 1% of it at the last scheduled epoch and stays there.
    """
    base = config.learning_rate
    total = config.schedule_epochs
    if config.schedule == "step":
        return base * (0.1 ** ((epoch > total // 2) + (epoch > (3 * total) // 4)))
    if config.schedule == "cosine":
        progress = min(epoch - 1, total - 1) / max(total - 1, 1)
        return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))
    return base


def epoch_data(
    config: NetworkConfig, epoch: int, pixels: PixelArray, labels: LabelArray
) -> tuple[PixelArray, LabelArray]:
    """The samples of epoch `epoch`: shuffled and augmented as configured, else as given."""
    if config.shuffle:
        order = np.random.default_rng([config.seed, epoch, SHUFFLE_TAG]).permutation(len(labels))
        pixels, labels = pixels[order], labels[order]
    if config.augment != "none":
        pixels = augment_epoch(
            pixels,
            seed=config.seed,
            epoch=epoch,
            settings=AUGMENT_PRESETS[config.augment],
            workers=2,
        )
    return pixels, labels


def forward(params: Params, x: FloatArray, output: str) -> tuple[FloatArray, FloatArray]:
    """`maths.forward` of a parameter dict (biases included)."""
    return maths.forward(
        params["w_input_hidden"],
        params["w_hidden_output"],
        x,
        bias_hidden=params["bias_hidden"],
        bias_output=params["bias_output"],
        output=output,
    )


def descent_directions(
    params: Params, x: FloatArray, labels: LabelArray, output: str, *, mean: bool = True
) -> Params:
    """Minus the batch-mean gradient of the loss, for every parameter (`mean=False`: the sum of
    the per-sample ones, as the book's rule adds up a batch's updates).

    softmax: cross-entropy loss, one-hot targets; d loss / d logits = p - t.
    sigmoid: the book's rule (squared error at the outputs, hidden error W_ho.T @ (t - o)).
    """
    hidden, outputs = forward(params, x, output)
    rows = np.arange(len(labels))
    if output == "softmax":
        one_hot = np.zeros_like(outputs)
        one_hot[rows, labels] = 1.0
        delta_output = one_hot - outputs
        error_hidden = delta_output @ params["w_hidden_output"]
    else:
        error = maths.targets(labels, outputs.shape[1], outputs.dtype) - outputs
        delta_output = error * outputs * (1.0 - outputs)
        error_hidden = error @ params["w_hidden_output"]
    delta_hidden = error_hidden * hidden * (1.0 - hidden)
    scale = x.dtype.type(1.0 / len(labels) if mean else 1.0)  # x * 1.0 is x, bit for bit
    return {
        "w_input_hidden": (delta_hidden.T @ x) * scale,
        "w_hidden_output": (delta_output.T @ hidden) * scale,
        "bias_hidden": delta_hidden.sum(axis=0) * scale,
        "bias_output": delta_output.sum(axis=0) * scale,
    }


def cross_entropy(params: Params, x: FloatArray, labels: LabelArray) -> float:
    """Mean cross-entropy loss of a softmax network (for the gradient check and reports)."""
    _, outputs = forward(params, x, "softmax")
    return float(-np.mean(np.log(outputs[np.arange(len(labels)), labels])))


def minibatch_epoch(
    params: Params,
    velocities: Params,
    pixels: PixelArray,
    labels: LabelArray,
    scale: FloatArray,
    config: NetworkConfig,
    learning_rate: float,
) -> None:
    """One epoch of mini-batch SGD in file order; updates `params` and `velocities` in place.

    The one mini-batch loop. Under the book's rule (`config.uses_reference_update`) a batch
    adds up the reference's per-sample updates computed at the same weights, so `batch_size=1`
    is the reference algorithm (up to summation order); otherwise the gradient is the batch
    mean, with momentum when configured. The last batch may be smaller.
    """
    dtype = scale.dtype.type
    lr, momentum = dtype(learning_rate), dtype(config.momentum)
    trainable = WEIGHT_KEYS if config.biases else WEIGHT_KEYS[:2]
    mean = not config.uses_reference_update
    for start in range(0, len(labels), config.batch_size):
        x = scale[pixels[start : start + config.batch_size]]
        batch_labels = labels[start : start + config.batch_size]
        directions = descent_directions(params, x, batch_labels, config.output, mean=mean)
        for key in trainable:
            if config.momentum:
                velocity = velocities[key]
                velocity *= momentum
                velocity += directions[key]
                params[key] += lr * velocity
            else:
                params[key] += lr * directions[key]
