"""The `predict --show` preview: the original image beside the 28x28 the network saw."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mnistnn.config import IMAGE_SIDE, INPUT_NODES
from mnistnn.core.files import write_bytes_atomic
from mnistnn.predict.image import load_image
from mnistnn.types import PixelArray


def save_preview(
    original_path: str | os.PathLike[str],
    pixels784: PixelArray,
    out_png: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Write a PNG of the original image beside the 28x28 the network saw (upscaled, blocky).

    Most surprising predictions are explained by the preprocessing (a crop that caught a
    shadow, a faint stroke lost as noise), and users can only see that side by side. Uses
    `Figure` directly, not pyplot, so no GUI backend or global figure state is involved.
    """
    pixels = np.asarray(pixels784)
    if pixels.size != INPUT_NODES:
        raise ValueError(f"pixels784 must have {INPUT_NODES} values, got shape {pixels.shape}")
    original = load_image(original_path)
    figure = Figure(figsize=(6.4, 3.4), dpi=100, layout="constrained")
    left, right = figure.subplots(1, 2)
    left.imshow(original, cmap="gray", vmin=0, vmax=255)
    left.set_title(f"original: {Path(original_path).name}", fontsize=9)
    square = pixels.reshape(IMAGE_SIDE, IMAGE_SIDE)
    right.imshow(square, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    right.set_title("network input (28×28)", fontsize=9)
    for axes in (left, right):
        axes.set_xticks([])
        axes.set_yticks([])
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(out_png, buffer.getvalue())
