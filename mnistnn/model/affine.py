"""Affine coordinate maps and the one bilinear resampling that applies every distortion.

`affine_maps` gives, per image, the source coordinates of each output pixel (rotation, scale,
shear, shift); `mnistnn.model.elastic` adds its displacement fields to them; `warp_into` then
resamples each image once, vectorised over a chunk with flat indexing into zero-padded copies.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mnistnn.config import IMAGE_SIDE, INPUT_NODES
from mnistnn.types import FloatArray, PixelArray

_SIDE = IMAGE_SIDE
_CENTRE = (IMAGE_SIDE - 1) / 2.0
_PADDED = IMAGE_SIDE + 3  # one zero row/column before, two after: every neighbour is in range


def check_pixels(pixels: PixelArray) -> None:
    """Fail early and clearly rather than deep inside the vectorised code."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise ValueError(
            f"pixels must be a uint8 numpy array, got {getattr(pixels, 'dtype', pixels)!r}"
        )
    if pixels.ndim != 2 or pixels.shape[1] != INPUT_NODES:
        raise ValueError(f"pixels must have shape (n, {INPUT_NODES}), got {pixels.shape}")


class Workspace:
    """Scratch arrays for up to `size` images (maps, elastic fields, resampling buffers), reused
    chunk after chunk by one thread.

    Fresh large temporaries per chunk were measured to cost up to 3x more time (page faults as
    malloc hands memory back to the OS and maps it again, worse across threads); with every
    buffer reused a chunk allocates almost nothing.
    """

    def __init__(self, size: int) -> None:
        field_shape = (size, 2, _SIDE, _SIDE)
        self.coords = np.empty(field_shape, dtype=np.float32)
        self.fields = np.empty(field_shape, dtype=np.float32)
        self.scratch = np.empty(field_shape, dtype=np.float32)
        self.padded = np.zeros((size, _PADDED, _PADDED), dtype=np.float32)  # border stays 0
        self.top = np.empty((size, INPUT_NODES), dtype=np.float32)
        self.left = np.empty((size, INPUT_NODES), dtype=np.float32)
        self.index = np.empty((size, INPUT_NODES), dtype=np.intp)
        self.neighbours = np.empty((4, size, INPUT_NODES), dtype=np.float32)
        # flat index of each image's pixel (0, 0) in the padded block
        self.offsets = (np.arange(size, dtype=np.intp) * _PADDED**2 + (_PADDED + 1))[:, None]


def affine_maps(
    rotation_degrees: FloatArray,
    scale: FloatArray,
    shear_degrees: FloatArray,
    shift: FloatArray,
    *,
    out: FloatArray | None = None,
) -> FloatArray:
    """Sampling coordinates (k, 2, 28, 28) float32 (source row, source column) of k affine maps.

    Each image is scaled, sheared (horizontally), rotated counter-clockwise as displayed, all about
    the image centre, then shifted by shift[:, 0] rows down and shift[:, 1] columns right. The
    map is the inverse of that forward transform, since output pixels are pulled from the source.
    It is separable, source = f(output row) + g(output column), so each (k, 28, 28) plane costs
    one broadcast add; identity parameters give exactly the integer grid.
    """
    angle = np.radians(np.asarray(rotation_degrees, dtype=np.float64))[:, None]
    slant = np.tan(np.radians(np.asarray(shear_degrees, dtype=np.float64)))[:, None]
    inverse_scale = 1.0 / np.asarray(scale, dtype=np.float64)[:, None]
    offset = np.asarray(shift, dtype=np.float64).reshape(-1, 2)
    grid = np.arange(_SIDE, dtype=np.float64)[None, :]
    rows = grid - _CENTRE - offset[:, 0:1]  # (k, 28) centred output rows, the shift undone
    cols = grid - _CENTRE - offset[:, 1:2]
    cos, sin = np.cos(angle) * inverse_scale, np.sin(angle) * inverse_scale
    if out is None:
        out = np.empty((len(angle), 2, _SIDE, _SIDE), dtype=np.float32)
    # float32 before the broadcast: a mixed-dtype add into float32 was measured 3x slower
    row_part = np.stack([cos * rows + _CENTRE, -(sin + slant * cos) * rows], axis=1)
    col_part = np.stack([sin * cols, (cos - slant * sin) * cols + _CENTRE], axis=1)
    np.add(
        row_part.astype(np.float32)[:, :, :, None],
        col_part.astype(np.float32)[:, :, None, :],
        out=out,
    )
    return out


def warp(pixels: PixelArray, coords: FloatArray) -> PixelArray:
    """Bilinear resampling (order 1) of (k, 784) uint8 images at coords (k, 2, 28, 28).

    coords[:, 0] are source rows and coords[:, 1] source columns (finite values). Samples
    outside the image read 0 (background), like map_coordinates(mode='grid-constant').
    """
    check_pixels(pixels)
    expected = (len(pixels), 2, _SIDE, _SIDE)
    if np.shape(coords) != expected:
        raise ValueError(f"coords must have shape {expected}, got {np.shape(coords)}")
    workspace = Workspace(len(pixels))
    workspace.coords[...] = coords  # warp_into clamps the coordinates in place
    out = np.empty_like(pixels)
    warp_into(workspace, pixels, workspace.coords, out)
    return out


def warp_into(
    workspace: Workspace, pixels: PixelArray, coords: FloatArray, out: PixelArray
) -> None:
    """Bilinear sampling of a chunk, vectorised: ~20 numpy passes instead of k Python calls.

    The four neighbours are gathered with flat indices into zero-padded float copies of the
    images. `coords` is overwritten (clamped, then reduced to fractional parts).
    """
    k = len(pixels)
    padded = workspace.padded[:k]
    padded[:, 1 : _SIDE + 1, 1 : _SIDE + 1] = pixels.reshape(k, _SIDE, _SIDE)
    rows, cols = coords[:, 0].reshape(k, INPUT_NODES), coords[:, 1].reshape(k, INPUT_NODES)
    # clamping to [-1, 28] is exact: beyond the border the zero-filled value is 0 anyway
    np.clip(rows, -1.0, _SIDE, out=rows)
    np.clip(cols, -1.0, _SIDE, out=cols)
    top, left = np.floor(rows, out=workspace.top[:k]), np.floor(cols, out=workspace.left[:k])
    rows -= top  # now the fractional parts
    cols -= left
    top *= _PADDED
    top += left  # small integers: exact in float32
    index = workspace.index[:k]
    np.copyto(index, top, casting="unsafe")
    index += workspace.offsets[:k]
    neighbours = workspace.neighbours[:, :k]
    _interpolate(padded.reshape(-1), index, rows, cols, neighbours, out.reshape(k, INPUT_NODES))


def _interpolate(
    flat: FloatArray,
    index: npt.NDArray[np.intp],
    rows: FloatArray,
    cols: FloatArray,
    neighbours: FloatArray,
    out: PixelArray,
) -> None:
    """Blend the four neighbours of top-left `index` by the fractions into uint8 `out`.

    Works in `neighbours` (4, k, 784) and shifts `index` in place, saving allocations.
    """
    upper_left, upper_right, lower_left, lower_right = neighbours
    np.take(flat, index, out=upper_left, mode="clip")  # "clip": no bounds pass, indices valid
    index += 1
    np.take(flat, index, out=upper_right, mode="clip")
    index += _PADDED
    np.take(flat, index, out=lower_right, mode="clip")
    index -= 1
    np.take(flat, index, out=lower_left, mode="clip")
    upper_right -= upper_left
    upper_right *= cols
    upper_right += upper_left  # the upper row, interpolated
    lower_right -= lower_left
    lower_right *= cols
    lower_right += lower_left  # the lower row
    lower_right -= upper_right
    lower_right *= rows
    lower_right += upper_right
    np.rint(lower_right, out=lower_right)
    np.clip(lower_right, 0.0, 255.0, out=lower_right)
    np.copyto(out, lower_right, casting="unsafe")
