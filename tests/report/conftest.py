"""Report fixtures and the PNG check every figure test uses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mnistnn.report import canvas

MAX_BYTES = 100_000


def decoded(png: bytes) -> Image.Image:
    """Decode fully with Pillow, so a truncated or corrupt file fails here."""
    assert png.startswith(canvas.PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    return image


def check_png(png: bytes, size: tuple[int, int]) -> None:
    """Valid PNG, of exactly `size` by both the IHDR header and the decoder, under 100 KB."""
    assert canvas.png_size(png) == size
    assert decoded(png).size == size
    assert len(png) < MAX_BYTES


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def test_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1,000 noisy 'digits', labels and sigmoid-like outputs with some confident mistakes."""
    n = 1000
    pixels = (rng.random((n, 784)) ** 4 * 255).astype(np.uint8)
    labels = rng.integers(0, 10, n)
    outputs = rng.random((n, 10)) * 0.3
    outputs[np.arange(n), labels] = 0.9
    wrong = rng.choice(n, 60, replace=False)
    outputs[wrong, (labels[wrong] + 1) % 10] = rng.uniform(0.91, 0.999, 60)
    return pixels, labels, outputs
