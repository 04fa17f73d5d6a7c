"""The canvas every report figure shares: fixed pixel sizes, Agg rendering, small PNG bytes.

Every figure function draws on its own `matplotlib.figure.Figure` rendered by the Agg canvas, never
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
    promotion_recall    800 x 400

The rendered image is palette-quantised (256 colours, no dithering) and saved with PNG
optimisation: every figure is a few flat colours plus one colour map, so nothing visible is
lost, and each PNG stays well under 100 KB once it is embedded base64 in markdown.

The figures themselves are in `figures` (curves, confusion matrix), `digits` (digit grids,
weight tiles, back-query images) and `sweep` (the sweep charts).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

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
    "promotion_recall": (800, 400),
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Line colours of the two test scores, the same in every chart that shows them.
ACCURACY_COLOUR = "#1f77b4"
CONFIDENT_COLOUR = "#ff7f0e"


# -- rendering ----------------------------------------------------------------------------------
def new_figure(key: str) -> Figure:
    """A figure of the fixed pixel size registered for `key`, laid out by the constrained engine."""
    width, height = FIGURE_SIZES[key]
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def to_png(figure: Figure) -> bytes:
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
def series(name: str, values: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """1-D finite float array, so that a bad history fails here and not deep inside matplotlib."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers")
    return array


def scores(name: str, values: Sequence[float | None]) -> FloatArray:
    """Per-epoch scores with NaN where an epoch was not scored: matplotlib leaves a gap there,
    so no value is ever drawn that was not measured. At least one score must be present."""
    array = series(name, [0.0 if value is None else value for value in values])
    array[[value is None for value in values]] = np.nan
    if np.isnan(array).all():
        raise ValueError(f"{name} must have at least one scored epoch")
    return array


def same_length(**series: FloatArray) -> None:
    """Paired series (x and y of one plot) must have one value per epoch each."""
    lengths = {name: len(values) for name, values in series.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"series must have the same length, got {lengths}")
