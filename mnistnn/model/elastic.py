"""Simard's elastic distortion: counter-addressed uniform noise, smoothed by a Gaussian, scaled.

The noise of the j-th elastic image of an epoch sits at a fixed offset of one PCG64 stream, so
it does not depend on chunking or threads; the Gaussian is a 28x28 matrix applied from both
sides (BLAS), equal to scipy's 2-D filter with mode "constant".
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from mnistnn.config import IMAGE_SIDE
from mnistnn.types import FloatArray

_SIDE = IMAGE_SIDE
#: Noise beyond the image is 0 when smoothing, as in the usual reference implementation of
#: Simard's distortion: fields fade towards the border. Same strength over the digit as 'reflect',
#: but 'reflect' (kernel radius 16 > half the image) folded 0.16% of border pixels, this none.
_BOUNDARY = "constant"
_FIELD_VALUES = 2 * IMAGE_SIDE * IMAGE_SIDE  # float32 draws per elastic image (dy and dx)


def elastic_noise(noise_seed: int, first: int, *, out: FloatArray) -> None:
    """Fill `out` (m, 2, 28, 28) with the uniform [-1, 1) noise of the epoch's elastic images
    number first .. first + m - 1 (counted over the whole epoch, not the chunk).

    PCG64 jumps ahead in O(log n): a float32 draw takes half of one 64-bit output and an image
    takes an even number of them, so elastic image j starts exactly j * 784 outputs in (the
    chunking tests would catch a numpy that drew float32 differently).
    """
    bit_generator = np.random.PCG64(noise_seed)
    bit_generator.advance(first * (_FIELD_VALUES // 2))
    np.random.Generator(bit_generator).random(dtype=np.float32, out=out)
    out *= 2.0
    out -= 1.0


@functools.lru_cache(maxsize=8)
def _smoothing_matrices(sigma: float, alpha: float) -> tuple[FloatArray, FloatArray]:
    """G and alpha * G.T, where G @ v == gaussian_filter1d(v, sigma, mode="constant").

    Smoothing is linear, so its 28x28 matrix applied from both sides (G @ F @ G.T) equals the
    2-D Gaussian filter, and BLAS does a chunk of fields fast.
    """
    matrix = ndimage.gaussian_filter1d(np.eye(_SIDE), sigma, axis=0, mode=_BOUNDARY)
    left = matrix.astype(np.float32)
    right = (matrix.T * alpha).astype(np.float32)
    left.flags.writeable = False
    right.flags.writeable = False
    return left, right


def smooth(fields: FloatArray, *, alpha: float, sigma: float, scratch: FloatArray) -> None:
    """Replace `fields` (m, 2, 28, 28) by alpha * Gaussian(sigma)-smoothed fields, in place.

    A stacked matmul calls BLAS once per 28x28 field with identical shapes, so each field's
    result is independent of how many fields share the call (one (m*28, 28) product is faster
    but its rounding depends on m, which would make results depend on the chunking).
    """
    left, right = _smoothing_matrices(float(sigma), float(alpha))
    np.matmul(left, fields, out=scratch)
    np.matmul(scratch, right, out=fields)


def elastic_displacements(noise: FloatArray, *, alpha: float, sigma: float) -> FloatArray:
    """Simard's elastic field: `noise` (k, 2, 28, 28) smoothed by a Gaussian of sigma, times alpha.

    Equal (to float32 rounding) to
    alpha * gaussian_filter(noise, sigma=(0, 0, sigma, sigma), mode="constant").
    """
    fields = np.array(noise, dtype=np.float32).reshape(-1, 2, _SIDE, _SIDE)
    smooth(fields, alpha=alpha, sigma=sigma, scratch=np.empty_like(fields))
    return fields.reshape(np.shape(noise))
