"""Figures made of 28x28 images: confident mistakes, hidden-node weight tiles, back-query digits."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mnistnn.config import IMAGE_SIDE, INPUT_NODES
from mnistnn.report.canvas import new_figure, to_png
from mnistnn.types import FloatArray

_TILE_GUTTER_COLOUR = "#d0d0d0"

#: At most this many hidden nodes are drawn as tiles: weights are noise-like and barely
#: compress, so every tile costs about 0.8 KB of PNG; 100 tiles keep the figure under 100 KB.
MAX_WEIGHT_TILES = 100
#: Discrete colour levels of the weight map: 24 steps read as well as 256 and compress better.
_WEIGHT_LEVELS = 24


# -- input checks -------------------------------------------------------------------------------


def _images(name: str, values: npt.ArrayLike) -> FloatArray:
    """(n, 784) array of flattened 28x28 images."""
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[1] != INPUT_NODES or array.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (n, {INPUT_NODES}) with n >= 1, got {array.shape}"
        )
    return array


def tile(row: npt.ArrayLike) -> FloatArray:
    """One flattened image as a 28x28 tile."""
    return np.asarray(row).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _grid(count: int, aspect: float = 1.0) -> tuple[int, int]:
    """(rows, columns) for `count` tiles, about `aspect` times wider than tall (88 -> 8 x 11)."""
    columns = max(1, math.ceil(math.sqrt(count * aspect)))
    return math.ceil(count / columns), columns


def frame_image(axes: Axes) -> None:
    """Digit images need no ticks; a light frame shows the 28x28 extent on a white page."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_color("#bbbbbb")


# -- images -------------------------------------------------------------------------------------
def confident_mistakes(
    pixels: npt.ArrayLike, labels: npt.ArrayLike, outputs: npt.ArrayLike, count: int = 16
) -> bytes:
    """Grid of the `count` test digits the network got wrong with the largest winning output.

    These are the most instructive errors: ambiguous or mislabelled digits show up here. The
    grid is laid out for `count` tiles so tile size does not depend on how many mistakes exist;
    with no mistake at all the figure says so.
    """
    images = _images("pixels", pixels)
    truth = np.asarray(labels).astype(np.intp)
    scores = np.asarray(outputs, dtype=np.float64)
    n_samples = images.shape[0]
    if truth.shape != (n_samples,) or scores.ndim != 2 or scores.shape[0] != n_samples:
        raise ValueError(
            f"labels must be (n,) and outputs (n, classes) for n={n_samples}; "
            f"got {truth.shape} and {scores.shape}"
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    predicted = np.argmax(scores, axis=1)
    confidence = scores[np.arange(n_samples), predicted]
    wrong = np.flatnonzero(predicted != truth)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    figure = new_figure("mistakes")
    if worst.size == 0:
        return _no_mistakes(figure, n_samples)
    rows, columns = _grid(count)
    grid = figure.subplots(rows, columns, squeeze=False)
    for slot, axes in enumerate(grid.flat):
        if slot >= worst.size:
            axes.set_axis_off()
        else:
            frame_image(axes)
            index = worst[slot]
            axes.imshow(tile(images[index]), cmap="Greys", vmin=0, vmax=255)
            title = f"true {truth[index]} / pred {predicted[index]} ({confidence[index]:.2f})"
            axes.set_title(title, fontsize=9)
    figure.suptitle(
        f"Most confidently wrong test digits ({worst.size} shown of {wrong.size:,} mistakes)"
    )
    return to_png(figure)


def _no_mistakes(figure: Figure, n_samples: int) -> bytes:
    """The mistakes figure when every digit was right: keep the size, say why it is empty."""
    axes = figure.subplots()
    axes.set_axis_off()
    axes.text(
        0.5,
        0.5,
        f"no mistakes\nall {n_samples:,} test digits were classified correctly",
        ha="center",
        va="center",
        fontsize=14,
        transform=axes.transAxes,
    )
    return to_png(figure)


def hidden_weight_tiles(w_input_hidden: npt.ArrayLike) -> bytes:
    """Each hidden node's 784 input weights as a 28x28 tile (88 nodes -> 8 rows x 11 columns).

    The tiles are assembled into one mosaic image (one imshow instead of 88 axes: faster and far
    smaller). The diverging colour map is symmetric around 0 (red positive, blue negative) and
    saturates at the 99.5th percentile of |weight| so a few outliers do not wash out the rest.
    Only the first `MAX_WEIGHT_TILES` nodes are drawn, to bound the PNG size.
    """
    weights = _images("w_input_hidden", w_input_hidden).astype(np.float64)
    total = weights.shape[0]
    weights = weights[:MAX_WEIGHT_TILES]
    nodes = weights.shape[0]
    rows, columns = _grid(nodes, aspect=4 / 3)
    step = IMAGE_SIDE + 1
    mosaic = np.full((rows * step + 1, columns * step + 1), np.nan)
    for node in range(nodes):
        top, left = divmod(node, columns)
        mosaic[top * step + 1 : top * step + step, left * step + 1 : left * step + step] = tile(
            weights[node]
        )
    limit = float(np.percentile(np.abs(weights), 99.5)) or 1.0
    figure = new_figure("hidden_weights")
    axes = figure.subplots()
    cmap = colormaps["RdBu_r"].resampled(_WEIGHT_LEVELS).with_extremes(bad=_TILE_GUTTER_COLOUR)
    image = axes.imshow(mosaic, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_axis_off()
    shown = f"{total}" if nodes == total else f"first {nodes} of {total}"
    axes.set_title(f"Input weights of the {shown} hidden nodes (node 0 top left, row by row)")
    figure.colorbar(image, ax=axes, shrink=0.8, extend="both", label="weight")
    return to_png(figure)


def backward_query_images(images: npt.ArrayLike) -> bytes:
    """The back-query image of each digit (what the network 'imagines'), titled by digit.

    Drawn like the book: 'Greys' (high values dark, as ink), on a fixed 0..1 scale.
    """
    pictures = _images("images", images).astype(np.float64)
    count = pictures.shape[0]
    rows = 2 if count > 5 else 1
    columns = math.ceil(count / rows)
    figure = new_figure("backward_query")
    grid = figure.subplots(rows, columns, squeeze=False)
    for digit, axes in enumerate(grid.flat):
        if digit >= count:
            axes.set_axis_off()
        else:
            frame_image(axes)
            axes.imshow(tile(pictures[digit]), cmap="Greys", vmin=0.0, vmax=1.0)
            axes.set_title(f"digit {digit}", fontsize=10)
    figure.suptitle("Back-query: the input the network associates with each digit")
    return to_png(figure)
