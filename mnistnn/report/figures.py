"""PNG figures of a training run, for the run folder and the Prefect markdown artifact.

Every function draws on its own `matplotlib.figure.Figure` rendered by the Agg canvas, never
through pyplot, so nothing touches matplotlib's global figure registry and figures can be drawn
from several worker threads at once. Each returns PNG bytes of a fixed pixel size, whatever the
input (`FIGURE_SIZES`, width x height at `DPI`):

    learning_curve      800 x 450
    confusion           640 x 560
    mistakes            720 x 800
    hidden_weights      960 x 680
    backward_query      800 x 380
    time_to_accuracy    800 x 450
    sweep               800 x 450

The rendered image is palette-quantised (256 colours, no dithering) and saved with PNG
optimisation: every figure is a few flat colours plus one colour map, so nothing visible is
lost, and each PNG stays well under 100 KB once it is embedded base64 in markdown.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from PIL import Image

from mnistnn.config import IMAGE_SIDE, INPUT_NODES
from mnistnn.types import FloatArray

#: Dots per inch of every figure; with the sizes below, 10 pt text is about 14 px high.
DPI = 100

#: (width, height) in pixels of each figure, keyed like the report's figure keys.
FIGURE_SIZES: dict[str, tuple[int, int]] = {
    "learning_curve": (800, 450),
    "confusion": (640, 560),
    "mistakes": (720, 800),
    "hidden_weights": (960, 680),
    "backward_query": (800, 380),
    "time_to_accuracy": (800, 450),
    "sweep": (800, 450),
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_ACCURACY_COLOUR = "#1f77b4"
_CONFIDENT_COLOUR = "#ff7f0e"
_TILE_GUTTER_COLOUR = "#d0d0d0"

#: At most this many hidden nodes are drawn as tiles: weights are noise-like and barely
#: compress, so every tile costs about 0.8 KB of PNG; 100 tiles keep the figure under 100 KB.
MAX_WEIGHT_TILES = 100
#: Discrete colour levels of the weight map: 24 steps read as well as 256 and compress better.
_WEIGHT_LEVELS = 24


# -- rendering ----------------------------------------------------------------------------------
def _new_figure(key: str) -> Figure:
    """A figure of the fixed pixel size registered for `key`, laid out by the constrained engine."""
    width, height = FIGURE_SIZES[key]
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _to_png(figure: Figure) -> bytes:
    """Render with Agg and save as an optimised 256-colour PNG (a fraction of the RGBA size)."""
    canvas = FigureCanvasAgg(figure)  # the Agg canvas explicitly, whatever the default backend
    raw = io.BytesIO()
    figure.savefig(raw, format="rgba", dpi=DPI)
    size = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", size, raw.getvalue(), "raw", "RGBA", 0, 1).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, read from the IHDR header without decoding the image."""
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG: missing the PNG signature or the IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# -- input checks -------------------------------------------------------------------------------
def _series(name: str, values: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """1-D finite float array, so that a bad history fails here and not deep inside matplotlib."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers")
    return array


def _same_length(**series: FloatArray) -> None:
    """Paired series (x and y of one plot) must have one value per epoch each."""
    lengths = {name: len(values) for name, values in series.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"series must have the same length, got {lengths}")


def _images(name: str, values: npt.ArrayLike) -> FloatArray:
    """(n, 784) array of flattened 28x28 images."""
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[1] != INPUT_NODES or array.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (n, {INPUT_NODES}) with n >= 1, got {array.shape}"
        )
    return array


def _tile(row: npt.ArrayLike) -> FloatArray:
    """One flattened image as a 28x28 tile."""
    return np.asarray(row).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _grid(count: int, aspect: float = 1.0) -> tuple[int, int]:
    """(rows, columns) for `count` tiles, about `aspect` times wider than tall (88 -> 8 x 11)."""
    columns = max(1, math.ceil(math.sqrt(count * aspect)))
    return math.ceil(count / columns), columns


def _frame_image(axes: Axes) -> None:
    """Digit images need no ticks; a light frame shows the 28x28 extent on a white page."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_color("#bbbbbb")


# -- per-epoch curves ---------------------------------------------------------------------------
def learning_curve(
    epochs: Sequence[int], accuracy: Sequence[float], confident: Sequence[float]
) -> bytes:
    """Test accuracy and the reference's confident score per epoch, y axis in percent.

    Both scores are plotted because the reference reports the confident score (output > 0.85
    at the true label) while argmax accuracy is what the champion comparison uses.
    """
    x = _series("epochs", epochs)
    acc = _series("accuracy", accuracy)
    conf = _series("confident", confident)
    _same_length(epochs=x, accuracy=acc, confident=conf)
    figure = _new_figure("learning_curve")
    axes = figure.subplots()
    # the final values go in the legend: labels at the curves' ends collide when they are close
    marker = "o" if len(x) <= 30 else None
    axes.plot(
        x,
        acc,
        "-",
        marker=marker,
        color=_ACCURACY_COLOUR,
        label=f"accuracy (largest output is right): {acc[-1]:.2%}",
    )
    axes.plot(
        x,
        conf,
        "--",
        marker="s" if marker else None,
        color=_CONFIDENT_COLOUR,
        label=f"confident score (output > 0.85): {conf[-1]:.2%}",
    )
    axes.margins(x=0.05, y=0.12)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set(xlabel="epoch", ylabel="test set score", title="Test scores per epoch")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _to_png(figure)


def time_to_accuracy(seconds: Sequence[float], accuracy: Sequence[float]) -> bytes:
    """Accuracy against cumulative training time; `seconds` are per-epoch training durations.

    Durations (as recorded per epoch) are summed here, so the x axis shows what a reader wants
    to know: how long training took to reach each accuracy. Points are labelled with their epoch.
    """
    durations = _series("seconds", seconds)
    acc = _series("accuracy", accuracy)
    _same_length(seconds=durations, accuracy=acc)
    if np.any(durations < 0):
        raise ValueError("seconds must be per-epoch durations >= 0")
    elapsed = np.cumsum(durations)
    figure = _new_figure("time_to_accuracy")
    axes = figure.subplots()
    axes.plot(elapsed, acc, "o-", color=_ACCURACY_COLOUR)
    labelled = range(len(acc)) if len(acc) <= 15 else [len(acc) - 1]
    for index in labelled:
        axes.annotate(
            f"epoch {index + 1}",
            (elapsed[index], acc[index]),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    axes.set_xlim(0, max(float(elapsed[-1]), 1e-9) * 1.1)
    axes.margins(y=0.15)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set(
        xlabel="cumulative training time (s)",
        ylabel="test accuracy",
        title=f"Accuracy against training time ({elapsed[-1]:.1f} s in total)",
    )
    axes.grid(alpha=0.3)
    return _to_png(figure)


# -- confusion matrix ---------------------------------------------------------------------------
def confusion_heatmap(confusion: npt.ArrayLike) -> bytes:
    """Counts heat map, rows = true label, columns = predicted label, every cell annotated.

    A square-root colour scale keeps the (small) off-diagonal counts visible next to a diagonal
    of about a thousand; the printed counts carry the exact values.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"confusion must be a square (k, k) matrix, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("confusion counts must be >= 0")
    classes = counts.shape[0]
    highest = max(float(counts.max()), 1.0)
    figure = _new_figure("confusion")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=highest))
    for (row, column), value in np.ndenumerate(counts):
        dark = value > 0.35 * highest
        axes.text(
            column,
            row,
            f"{int(value)}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if dark else "black",
        )
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set(
        xlabel="predicted label",
        ylabel="true label",
        title=f"Confusion matrix ({int(counts.sum()):,} test digits)",
    )
    axes.tick_params(length=0)
    figure.colorbar(image, ax=axes, shrink=0.85, label="count (square-root scale)")
    return _to_png(figure)


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
    figure = _new_figure("mistakes")
    if worst.size == 0:
        return _no_mistakes(figure, n_samples)
    rows, columns = _grid(count)
    grid = figure.subplots(rows, columns, squeeze=False)
    for slot, axes in enumerate(grid.flat):
        if slot >= worst.size:
            axes.set_axis_off()
        else:
            _frame_image(axes)
            index = worst[slot]
            axes.imshow(_tile(images[index]), cmap="Greys", vmin=0, vmax=255)
            title = f"true {truth[index]} / pred {predicted[index]} ({confidence[index]:.2f})"
            axes.set_title(title, fontsize=9)
    figure.suptitle(
        f"Most confidently wrong test digits ({worst.size} shown of {wrong.size:,} mistakes)"
    )
    return _to_png(figure)


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
    return _to_png(figure)


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
        mosaic[top * step + 1 : top * step + step, left * step + 1 : left * step + step] = _tile(
            weights[node]
        )
    limit = float(np.percentile(np.abs(weights), 99.5)) or 1.0
    figure = _new_figure("hidden_weights")
    axes = figure.subplots()
    cmap = colormaps["RdBu_r"].resampled(_WEIGHT_LEVELS).with_extremes(bad=_TILE_GUTTER_COLOUR)
    image = axes.imshow(mosaic, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_axis_off()
    shown = f"{total}" if nodes == total else f"first {nodes} of {total}"
    axes.set_title(f"Input weights of the {shown} hidden nodes (node 0 top left, row by row)")
    figure.colorbar(image, ax=axes, shrink=0.8, extend="both", label="weight")
    return _to_png(figure)


def backward_query_images(images: npt.ArrayLike) -> bytes:
    """The back-query image of each digit (what the network 'imagines'), titled by digit.

    Drawn like the book: 'Greys' (high values dark, as ink), on a fixed 0..1 scale.
    """
    pictures = _images("images", images).astype(np.float64)
    count = pictures.shape[0]
    rows = 2 if count > 5 else 1
    columns = math.ceil(count / rows)
    figure = _new_figure("backward_query")
    grid = figure.subplots(rows, columns, squeeze=False)
    for digit, axes in enumerate(grid.flat):
        if digit >= count:
            axes.set_axis_off()
        else:
            _frame_image(axes)
            axes.imshow(_tile(pictures[digit]), cmap="Greys", vmin=0.0, vmax=1.0)
            axes.set_title(f"digit {digit}", fontsize=10)
    figure.suptitle("Back-query: the input the network associates with each digit")
    return _to_png(figure)


# -- hyperparameter sweeps ----------------------------------------------------------------------
def sweep_chart(
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    title: str,
    log_x: bool = False,
) -> bytes:
    """Final test accuracy against one hyperparameter, one line per setting of the others.

    `lines` maps a legend label to (x values, accuracies), as Rashid's book draws its
    experiments with hidden nodes, learning rate and epochs.
    """
    if not lines:
        raise ValueError("lines must hold at least one series")
    figure = _new_figure("sweep")
    axes = figure.subplots()
    for label, (xs, ys) in lines.items():
        x = _series(f"{label} x", xs)
        y = _series(f"{label} accuracy", ys)
        _same_length(x=x, accuracy=y)
        order = np.argsort(x)
        axes.plot(x[order], y[order], "o-", label=label)
    if log_x:
        axes.set_xscale("log")
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.margins(y=0.15)
    axes.set(xlabel=xlabel, ylabel="final test accuracy", title=title)
    axes.grid(alpha=0.3)
    if len(lines) > 1 or next(iter(lines)):
        axes.legend(loc="best", fontsize=8)
    return _to_png(figure)
