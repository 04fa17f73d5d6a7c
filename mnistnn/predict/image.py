"""Turn an ordinary picture of one digit into the 784 pixels the network was trained on.

The network only ever saw MNIST, so an image must be brought into MNIST's form first, repeating
what the MNIST authors did: light ink on a dark (zero) background, the digit's bounding box
scaled with anti-aliasing so that its longer side is 20 px (aspect ratio kept), then placed in a
28x28 field so that its centre of mass sits at the centre. In MNIST that centre of mass is at
(14, 14) (row, column, 0-based) to within half a pixel, because the shift was a whole number of
pixels. A digit already 20 px long is shifted the same way, so an MNIST digit passes through
nearly unchanged; anything else is resampled with its centre of mass exactly at (14, 14).

Before that, a real photo or scan needs cleaning that MNIST's binary sources never needed: the
background level is read from the border and removed (inverting dark-on-light images), faint
noise below a fraction of the ink's range is zeroed, and small specks far from the digit are
dropped so that they cannot stretch the bounding box.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path
from typing import Final

import numpy as np
import scipy.ndimage as ndi
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistnn.config import IMAGE_SIDE
from mnistnn.data import text
from mnistnn.errors import DataError, MnistnnError, one_line
from mnistnn.inert import shown
from mnistnn.limits import IMAGE_BYTES, IMAGE_PIXELS, LimitExceeded, TimedReader
from mnistnn.types import FloatArray, PixelArray

#: File name suffixes (lower case) treated as images when a folder is expanded.
IMAGE_SUFFIXES: Final = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

#: MNIST's digits fit a 20x20 box inside the 28x28 field.
DIGIT_BOX: Final = 20
#: Where MNIST puts the centre of mass (row, column): pixel 14, not the geometric 13.5.
CENTRE_OF_MASS: Final = 14.0
#: Larger images are first reduced by an integer factor to at most this many pixels a side.
MAX_WORKING_SIDE: Final = 1024
#: An image whose ink differs from its background by less than this (of 255) is blank.
MIN_CONTRAST: Final = 24.0
#: Ink fainter than this fraction of the strongest ink is paper texture or sensor noise.
NOISE_FRACTION: Final = 0.2
#: Connected blobs with less than this fraction of the largest blob's ink are specks.
SPECK_FRACTION: Final = 0.02

#: What Pillow raises for a corrupt or truncated file, depending on the format plugin.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
#: ITU-R 601-2 luma weights, as Pillow's own RGB -> L conversion.
_LUMA: Final = np.array([0.299, 0.587, 0.114])
_EIGHT_CONNECTED: Final = np.ones((3, 3), dtype=bool)


# -- loading ---------------------------------------------------------------------------------
def load_image(path: str | os.PathLike[str]) -> FloatArray:
    """Read any common image file as a 2-D float64 grayscale array in 0..255.

    Transparent pixels are flattened onto white (a digit drawn on a transparent canvas is dark
    ink on "paper"); 16-bit images are scaled down to 0..255; EXIF rotation is applied, since
    phone photos are often stored sideways. Pillow's decompression-bomb limit stays on: an image
    over `Image.MAX_IMAGE_PIXELS` is refused here (without touching the global warning filters,
    which are not thread-safe), and so is one over our limits on pixels and decoded bytes
    (`mnistnn.limits`), before decoding, and one still decoding after the time limit (checked
    at each block read); so is anything missing, not a regular file (a FIFO never blocks),
    unreadable, corrupt or truncated, or with NaN or infinite pixel values.
    """
    source = Path(path)
    name = shown(source)
    if not source.exists():
        raise DataError(f"{name}: no such file")
    try:
        with text.open_regular(source, name) as raw, Image.open(TimedReader(raw, name)) as opened:
            _check_pixel_count(opened, name)
            opened.load()
            image = _reduced_image(ImageOps.exif_transpose(opened))
            return _to_gray(image, name)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{name}: refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"{name}: not an image, or not a format Pillow can read") from exc
    except MnistnnError:
        raise
    except _DECODE_ERRORS as exc:
        raise DataError(f"{name}: corrupt or truncated image ({one_line(exc)})") from exc


def _check_pixel_count(image: Image.Image, source: str) -> None:
    """Refuse oversized images before decoding: Pillow's bomb limit, whatever the warnings
    filter says, then ours on pixels and on decoded bytes (`mnistnn.limits`)."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.width * image.height
    if limit is not None and pixels > limit:
        raise DataError(
            f"{source}: refused as a decompression bomb "
            f"({image.width}x{image.height} = {pixels} pixels > limit {limit})"
        )
    if pixels > IMAGE_PIXELS.value():
        raise LimitExceeded(source, IMAGE_PIXELS, f"{image.width}x{image.height} pixels")
    decoded = pixels * _bytes_per_pixel(image.mode)
    if decoded > IMAGE_BYTES.value():
        raise LimitExceeded(
            source,
            IMAGE_BYTES,
            f"{image.width}x{image.height} {image.mode} = {decoded:,} bytes decoded",
        )


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow holds per pixel once decoded: 1 (L, P, 1), 2 (16-bit grey) or 4 (the rest:
    RGB is stored as 4 bytes, and 16-bit colour is decoded to 8 bits a channel)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _reduced_image(image: Image.Image) -> Image.Image:
    """Shrink a very large image by an integer factor (box average) while it is still compact
    (1-4 bytes a pixel): the float copies of the later steps then stay small."""
    factor = math.ceil(max(image.size) / MAX_WORKING_SIDE)
    if factor <= 1:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # a mode Pillow cannot reduce: the float steps reduce it later
        return image


def _to_gray(image: Image.Image, source: str) -> FloatArray:
    """Any Pillow mode -> float64 luminance in 0..255 (transparency composited onto white)."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{source}: pixel values that are not finite numbers (NaN or inf)")
        return _wide_to_gray(values, image.mode == "F")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3] / 255.0
        return np.asarray(rgba[..., :3] @ _LUMA * alpha + 255.0 * (1.0 - alpha))
    try:
        if image.mode not in ("1", "L", "P", "RGB"):
            image = image.convert("RGB")
        return np.asarray(image.convert("L"), dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{source}: unsupported colour mode {image.mode!r}") from exc


def _wide_to_gray(values: FloatArray, is_float: bool) -> FloatArray:
    """16/32-bit integer or float pixels -> 0..255.

    Pillow opens 16-bit PNG/TIFF as mode I;16 or I, with no record of the bit depth: integer
    values above 255 are taken as a 16-bit range. Float images within 0..1 are fractions.
    """
    top = float(values.max()) if values.size else 0.0
    if top > 255.0:
        values = values / 257.0
    elif is_float and top <= 1.0:
        values = values * 255.0
    return np.clip(values, 0.0, 255.0)


# -- preprocessing ---------------------------------------------------------------------------
def preprocess_array(gray: FloatArray | PixelArray, *, source: str = "<array>") -> PixelArray:
    """2-D grayscale image (any size, values 0..255) -> (784,) uint8 in MNIST's form.

    Pure: the input is not modified. Raises DataError naming `source` when the array is not a
    2-D image in range, or has no ink (blank, or too little contrast to tell digit from paper).
    """
    image = _reduced(_checked_gray(gray, source))
    ink = _suppress_noise(_ink_layer(image), source)
    return _centred_digit(_crop_to_ink(ink)).reshape(-1)


def preprocess_image(path: str | os.PathLike[str]) -> PixelArray:
    """Load an image file and preprocess it: (784,) uint8 ready for `NeuralNetwork.query`."""
    return preprocess_array(load_image(path), source=shown(path))


def _checked_gray(gray: FloatArray | PixelArray, source: str) -> FloatArray:
    image = np.asarray(gray, dtype=np.float64)
    if image.ndim != 2 or image.size == 0:
        raise DataError(f"{source}: expected a 2-D grayscale image, got shape {image.shape}")
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 255.0:
        raise DataError(f"{source}: grayscale values must be finite and within 0..255")
    return image


def _reduced(image: FloatArray) -> FloatArray:
    """Shrink very large images by an integer factor (area average) before any other step.

    A 12-megapixel photo of a digit that ends up 20 px tall needs no more than ~1000 px, and
    the float copies of the later steps would otherwise take hundreds of megabytes.
    """
    factor = math.ceil(max(image.shape) / MAX_WORKING_SIDE)
    if factor <= 1:
        return image
    reduced = Image.fromarray(image.astype(np.float32)).reduce(factor)
    return np.asarray(reduced, dtype=np.float64)


def _ink_layer(image: FloatArray) -> FloatArray:
    """Ink strength, 0 on the background: the border's median is taken as the paper colour.

    A light background means dark ink, so the image is inverted (MNIST is light on dark); the
    background level itself is subtracted, so grey paper or a grey screen becomes 0.
    """
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    background = float(np.median(border))
    ink = background - image if background > 127.5 else image - background
    return np.asarray(np.maximum(ink, 0.0), dtype=np.float64)


def _suppress_noise(ink: FloatArray, source: str) -> FloatArray:
    """Zero faint noise and small specks, and stretch the remaining ink to a full 0..255 range."""
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DataError(
            f"{source}: no ink found (blank or nearly uniform image); expected one digit, "
            "dark on light or light on dark"
        )
    ink = np.where(ink >= NOISE_FRACTION * peak, ink * (255.0 / peak), 0.0)
    return _drop_specks(ink)


def _drop_specks(ink: FloatArray) -> FloatArray:
    """Remove connected blobs much lighter than the largest: dust must not stretch the box."""
    labels, count = ndi.label(ink > 0, structure=_EIGHT_CONNECTED)
    if count <= 1:
        return ink
    mass = np.asarray(ndi.sum_labels(ink, labels, index=np.arange(1, count + 1)))
    keep = np.concatenate([[False], mass >= SPECK_FRACTION * mass.max()])
    return np.where(keep[np.asarray(labels)], ink, 0.0)


def _crop_to_ink(ink: FloatArray) -> FloatArray:
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _centred_digit(crop: FloatArray) -> PixelArray:
    """Scale the crop so its longer side is 20 px and centre its mass in the 28x28 field.

    A crop that is already 20 px long (an MNIST digit) is only shifted, by whole pixels, so it
    passes through unchanged. Anything else has to be resampled anyway, so it is resampled
    straight into the field with the centre of mass landing exactly on (14, 14): rounding the
    size or the shift to whole pixels instead would move strokes by up to half a pixel
    whenever a little noise changed the crop by one source pixel.
    """
    scale = DIGIT_BOX / max(crop.shape)
    if scale == 1.0:
        return _paste_by_centre_of_mass(crop)
    com_row, com_col = ndi.center_of_mass(crop)
    top = _placement(com_row, crop.shape[0], scale)
    left = _placement(com_col, crop.shape[1], scale)
    return _resample_into_field(crop, scale, top, left)


def _placement(centre_of_mass: float, length: int, scale: float) -> float:
    """Field coordinate of the crop's first edge that puts the mass centre on pixel 14's centre,
    clamped so that the whole scaled crop stays inside the field (Pillow's pixel i spans
    [i, i + 1], so pixel 14's centre is 14.5)."""
    start = CENTRE_OF_MASS + 0.5 - (centre_of_mass + 0.5) * scale
    return min(max(start, 0.0), IMAGE_SIDE - length * scale)


def _resample_into_field(crop: FloatArray, scale: float, top: float, left: float) -> PixelArray:
    """Resample the crop at `scale` into 28x28 with its corner at (top, left), anti-aliased.

    Pillow's box must lie inside the source, so the crop is padded with zeros to the whole
    source window that the field covers; bicubic enlarging overshoots a little at sharp edges,
    hence the clip.
    """
    window = IMAGE_SIDE / scale
    height, width = crop.shape
    pad_top, pad_left = math.ceil(top / scale) + 1, math.ceil(left / scale) + 1
    pad_bottom = max(0, math.ceil(window - top / scale - height)) + 1
    pad_right = max(0, math.ceil(window - left / scale - width)) + 1
    padded = np.pad(crop, ((pad_top, pad_bottom), (pad_left, pad_right))).astype(np.float32)
    box_left, box_top = pad_left - left / scale, pad_top - top / scale
    box = (box_left, box_top, box_left + window, box_top + window)
    field = Image.fromarray(padded).resize((IMAGE_SIDE, IMAGE_SIDE), _resampling(scale), box=box)
    return np.clip(np.rint(np.asarray(field, dtype=np.float64)), 0, 255).astype(np.uint8)


def _resampling(scale: float) -> Image.Resampling:
    """Area averaging to shrink, bicubic to enlarge.

    Shrinking by area gives each pixel its exact ink coverage, which is what anti-aliasing a
    binary digit (MNIST's sources) produces, and unlike Lanczos it never rings: a sharp
    stroke edge would otherwise leave faint ripples a pixel or two outside the digit. Area
    averaging would enlarge a small crop into blocks, so enlarging is bicubic.
    """
    return Image.Resampling.BOX if scale < 1.0 else Image.Resampling.BICUBIC


def _paste_by_centre_of_mass(digit: FloatArray) -> PixelArray:
    """Paste into a 28x28 field, shifted by whole pixels so the centre of mass is at (14, 14).

    A whole-pixel shift keeps the pixels exact, as MNIST did (its centres of mass lie within
    half a pixel of 14); the paste position is clamped so that no ink falls off the field.
    """
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float64)
    height, width = digit.shape
    com_row, com_col = ndi.center_of_mass(digit)
    top = _whole_offset(com_row, height)
    left = _whole_offset(com_col, width)
    field[top : top + height, left : left + width] = digit
    return np.clip(np.rint(field), 0, 255).astype(np.uint8)


def _whole_offset(centre_of_mass: float, length: int) -> int:
    wanted = int(np.floor(CENTRE_OF_MASS - centre_of_mass + 0.5))
    return min(max(wanted, 0), IMAGE_SIDE - length)
