"""The reference three-layer network: learned state (two weight matrices) over a frozen config.

Maths (one sample, column vectors; no biases):
    h = sigmoid(W_ih @ x)                  x (784,), W_ih (hidden, 784)
    o = sigmoid(W_ho @ h)                  W_ho (10, hidden)
    e_o = t - o;  e_h = W_ho.T @ e_o       both before the update, e_h with no sigmoid derivative
    W_ho += lr * (e_o * o * (1 - o)) @ h.T
    W_ih += lr * (e_h * h * (1 - h)) @ x.T
The maths is written once in `maths`; the per-sample loop runs compiled (`engine.sgd_epoch`);
scoring is one batched product.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logit

from mnistnn.config import IMAGE_SIDE, NetworkConfig
from mnistnn.errors import ConfigError
from mnistnn.model import engine, maths
from mnistnn.model import optim as modern
from mnistnn.types import FloatArray, IntArray, LabelArray, PixelArray

#: The back-query's target at the label (the book's 0.99: logit(1.0) would be infinite).
BACK_QUERY_ON = 0.99


def initial_weights(config: NetworkConfig) -> tuple[FloatArray, FloatArray]:
    """Initial (w_input_hidden, w_hidden_output) drawn from N(0, hidden**-0.5), N(0, out**-0.5).

    `legacy` reproduces `np.random.seed(seed)` followed by the reference constructor without
    touching numpy's global state; `default` uses `np.random.default_rng(seed)`.
    """
    shape_ih = (config.hidden_nodes, config.input_nodes)
    shape_ho = (config.output_nodes, config.hidden_nodes)
    std_ih = pow(config.hidden_nodes, -0.5)
    std_ho = pow(config.output_nodes, -0.5)
    if config.init == "legacy":
        legacy = np.random.RandomState(config.seed)
        w_ih = legacy.normal(0.0, std_ih, shape_ih)
        w_ho = legacy.normal(0.0, std_ho, shape_ho)
    else:
        rng = np.random.default_rng(config.seed)
        w_ih = rng.normal(0.0, std_ih, shape_ih)
        w_ho = rng.normal(0.0, std_ho, shape_ho)
    return w_ih.astype(config.dtype), w_ho.astype(config.dtype)


class NeuralNetwork:
    """The reference network. `train_epoch` is one pass (like scikit-learn's `partial_fit`)."""

    def __init__(
        self,
        config: NetworkConfig | None = None,
        weights: tuple[FloatArray, FloatArray] | None = None,
        *,
        extra_state: dict[str, FloatArray] | None = None,
        epochs_trained: int = 0,
    ) -> None:
        """A new network (initial weights from the config's seed), or one rebuilt from state.

        `extra_state` holds what the modern options add: `bias_hidden`, `bias_output` and the
        momentum velocities (`velocity_<name>`); missing entries start at zero.
        """
        self.config = config if config is not None else NetworkConfig()
        self.dtype = np.dtype(self.config.dtype)
        if weights is None:
            weights = initial_weights(self.config)
        self.w_input_hidden, self.w_hidden_output = self._checked_weights(*weights)
        self._scale = maths.input_scale(self.dtype)
        self.epochs_trained = epochs_trained
        extra = extra_state or {}
        zeros = {
            "bias_hidden": np.zeros(self.config.hidden_nodes, dtype=self.dtype),
            "bias_output": np.zeros(self.config.output_nodes, dtype=self.dtype),
        }
        self.bias_hidden = np.array(extra.get("bias_hidden", zeros["bias_hidden"]), self.dtype)
        self.bias_output = np.array(extra.get("bias_output", zeros["bias_output"]), self.dtype)
        self.velocities: dict[str, FloatArray] = {}
        if self.config.momentum:
            for key, value in self.parameters().items():
                saved = extra.get(f"velocity_{key}", np.zeros_like(value))
                self.velocities[key] = np.array(saved, dtype=self.dtype)

    def parameters(self) -> dict[str, FloatArray]:
        """The learned arrays by name (the same objects, not copies)."""
        return {
            "w_input_hidden": self.w_input_hidden,
            "w_hidden_output": self.w_hidden_output,
            "bias_hidden": self.bias_hidden,
            "bias_output": self.bias_output,
        }

    def extra_state(self) -> dict[str, FloatArray]:
        """What a checkpoint must hold beyond the two weight matrices to resume exactly."""
        state: dict[str, FloatArray] = {}
        if self.config.biases:
            state.update(bias_hidden=self.bias_hidden, bias_output=self.bias_output)
        state.update({f"velocity_{key}": value for key, value in self.velocities.items()})
        return state

    def _checked_weights(self, w_ih: FloatArray, w_ho: FloatArray) -> tuple[FloatArray, FloatArray]:
        cfg = self.config
        want_ih = (cfg.hidden_nodes, cfg.input_nodes)
        want_ho = (cfg.output_nodes, cfg.hidden_nodes)
        if np.shape(w_ih) != want_ih:
            raise ConfigError(f"w_input_hidden has shape {np.shape(w_ih)}, expected {want_ih}")
        if np.shape(w_ho) != want_ho:
            raise ConfigError(f"w_hidden_output has shape {np.shape(w_ho)}, expected {want_ho}")
        return (
            np.array(w_ih, dtype=self.dtype, order="C"),
            np.array(w_ho, dtype=self.dtype, order="C"),
        )

    # -- input checks -------------------------------------------------------------------------
    def _check_pixels(self, pixels: PixelArray) -> PixelArray:
        pixels = np.asarray(pixels)
        width = self.config.input_nodes
        if pixels.ndim == 1 and pixels.shape[0] == width:
            pixels = pixels[np.newaxis, :]
        if pixels.ndim != 2 or pixels.shape[1] != width:
            raise ValueError(f"pixels must have shape (n, {width}), got {pixels.shape}")
        if pixels.dtype != np.uint8:
            if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
                raise ValueError("pixels must be integers in 0..255")
            if not np.all(np.equal(np.mod(pixels, 1), 0)):
                raise ValueError("pixels must be integers in 0..255, got fractional values")
            pixels = pixels.astype(np.uint8)
        return pixels

    def _check_labels(self, labels: IntArray, n_samples: int) -> LabelArray:
        labels = np.asarray(labels)
        if labels.shape != (n_samples,):
            raise ValueError(f"labels must have shape ({n_samples},), got {labels.shape}")
        outputs = self.config.output_nodes
        if labels.size and (labels.min() < 0 or labels.max() >= outputs):
            bad = labels[(labels < 0) | (labels >= outputs)][0].item()
            raise ValueError(f"labels must be in 0..{outputs - 1}, got {bad!r}")
        return labels.astype(np.uint8)

    # -- training -----------------------------------------------------------------------------
    def train_epoch(
        self, pixels: PixelArray, labels: IntArray, *, threads: int | None = None
    ) -> None:
        """One pass over (n, 784) uint8 pixels and (n,) labels, updating the weights.

        The reference configuration goes through the samples in file order; shuffling,
        augmentation and the schedule (if configured) depend only on (seed, epoch number).
        `threads` (per-sample SGD only): 1 or 2 threads, None for `$MNISTNN_THREADS` or auto,
        the same weights bit for bit (`engine.sgd_epoch`).
        """
        pixels = self._check_pixels(pixels)
        checked_labels = self._check_labels(labels, pixels.shape[0])
        cfg = self.config
        epoch = self.epochs_trained + 1
        pixels, checked_labels = modern.epoch_data(cfg, epoch, pixels, checked_labels)
        lr = modern.learning_rate_at(cfg, epoch)
        if cfg.uses_reference_update and cfg.batch_size == 1:
            self.w_input_hidden, self.w_hidden_output = engine.sgd_epoch(
                pixels,
                checked_labels,
                self._scale,
                self.w_input_hidden,
                self.w_hidden_output,
                lr,
                threads=threads,
            )
        else:  # updates the arrays of `parameters()` in place
            modern.minibatch_epoch(
                self.parameters(), self.velocities, pixels, checked_labels, self._scale, cfg, lr
            )
        self.epochs_trained = epoch

    # -- inference ----------------------------------------------------------------------------
    def query(self, pixels: PixelArray) -> FloatArray:
        """(n, 784) uint8 pixels -> (n, 10) sigmoid outputs, as one batched computation."""
        x = self._scale[self._check_pixels(pixels)]
        if not self.config.uses_reference_update:
            return modern.forward(self.parameters(), x, self.config.output)[1]
        return maths.forward(self.w_input_hidden, self.w_hidden_output, x)[1]

    def predict(self, pixels: PixelArray) -> IntArray:
        """(n, 784) uint8 pixels -> (n,) most likely digits."""
        digits: IntArray = np.argmax(self.query(pixels), axis=1)
        return digits

    def backward_query(self, label: int) -> FloatArray:
        """(784,) image in 0..1 that the network associates with `label` (Rashid's back-query).

        The target vector (0.01, 0.99 at the label) goes backwards: inverse sigmoid, the
        transposed weights, and a rescale into 0.01..0.99 before each inverse sigmoid.
        """
        if not 0 <= label < self.config.output_nodes:
            raise ValueError(f"label must be in 0..{self.config.output_nodes - 1}, got {label!r}")
        targets = maths.targets(np.array([label]), self.config.output_nodes, on=BACK_QUERY_ON)[0]
        # inverse of the output layer: logit for sigmoid, log (up to a constant) for softmax
        final_inputs = np.log(targets) if self.config.output == "softmax" else logit(targets)
        final_inputs = final_inputs - self.bias_output
        hidden = _rescale(self.w_hidden_output.T.astype(np.float64) @ final_inputs)
        hidden_inputs = logit(hidden) - self.bias_hidden
        inputs = _rescale(self.w_input_hidden.T.astype(np.float64) @ hidden_inputs)
        return np.asarray(inputs, dtype=np.float64)

    def backward_query_images(self) -> PixelArray:
        """(10, 28, 28) uint8 back-query images of the ten digits, 0..255 as MNIST pixels."""
        images = [self.backward_query(label) for label in range(self.config.output_nodes)]
        scaled: PixelArray = np.rint(np.stack(images) * 255.0).astype(np.uint8)
        return scaled.reshape(self.config.output_nodes, IMAGE_SIDE, IMAGE_SIDE)

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"NeuralNetwork({cfg.input_nodes}-{cfg.hidden_nodes}-{cfg.output_nodes}, "
            f"lr={cfg.learning_rate}, dtype={cfg.dtype}, batch_size={cfg.batch_size})"
        )


def _rescale(values: FloatArray) -> FloatArray:
    """Map values linearly onto 0.01..0.99, as the book does between layers of the back-query."""
    shifted: FloatArray = values - values.min()
    span = shifted.max()
    if span > 0:
        shifted = shifted / span
    return shifted * 0.98 + 0.01
