"""The reference maths on its own: input scale table, targets, sigmoid and the forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from mnistnn.model import maths
from tests.reference import ReferenceNetwork, reference_epoch


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_input_scale_table_values(dtype: str) -> None:
    table = maths.input_scale(dtype)
    assert table.shape == (256,) and table.dtype == np.dtype(dtype)
    assert table[0] == np.asarray(0.01, dtype=dtype)
    assert table[255] == np.asarray(1.0, dtype=dtype)
    assert table[128] == np.asarray(128 / 255.0 * 0.99 + 0.01, dtype=dtype)
    assert np.all(np.diff(table) > 0)
    # the same values as the book's per-row formula, level by level (cast once at the end)
    book = (np.arange(256, dtype=float) / 255.0 * 0.99) + 0.01
    np.testing.assert_array_equal(table, book.astype(dtype))


def test_scale_inputs_indexes_the_table() -> None:
    pixels = np.array([[0, 255, 7], [128, 1, 254]], dtype=np.uint8)
    np.testing.assert_array_equal(maths.scale_inputs(pixels), maths.input_scale()[pixels])
    assert maths.scale_inputs(pixels, "float32").dtype == np.float32


def test_targets_are_the_books() -> None:
    got = maths.targets(np.array([3, 0, 9]))
    assert got.shape == (3, 10) and got.dtype == np.float64
    for row, label in zip(got, [3, 0, 9], strict=True):
        book = np.zeros(10) + 0.01
        book[label] = 1.0
        np.testing.assert_array_equal(row, book)


def test_targets_dtype_classes_and_on_value() -> None:
    got = maths.targets(np.array([1], dtype=np.uint8), 4, "float32", on=0.99)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([[0.01, 0.99, 0.01, 0.01]], dtype=np.float32))
    assert maths.targets(np.array([], dtype=np.intp)).shape == (0, 10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_is_expit_in_the_input_dtype(dtype: str) -> None:
    z = np.linspace(-40, 40, 101).astype(dtype)
    got = maths.sigmoid(z)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expit(z))
    assert maths.sigmoid(np.array([0.0]))[0] == 0.5


def test_forward_equals_the_books_query() -> None:
    rng = np.random.default_rng(3)
    reference = ReferenceNetwork(
        784, 88, 10, 0.05, rng.normal(0, 88**-0.5, (88, 784)), rng.normal(0, 10**-0.5, (10, 88))
    )
    pixels = rng.integers(0, 256, (20, 784)).astype(np.uint8)
    reference_epoch(reference, pixels, rng.integers(0, 10, 20))  # trained, not just initial
    x = maths.scale_inputs(pixels)
    hidden, outputs = maths.forward(reference.wih, reference.who, x)
    assert hidden.shape == (20, 88) and outputs.shape == (20, 10)
    expected = np.stack([reference.query(row).ravel() for row in x])
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-12)
    book_hidden = np.stack([expit(reference.wih @ row.reshape(-1, 1)).ravel() for row in x])
    np.testing.assert_allclose(hidden, book_hidden, rtol=0, atol=1e-12)
