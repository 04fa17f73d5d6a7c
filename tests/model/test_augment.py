"""Data augmentation: exact geometry of each transform, determinism, and digit-likeness on MNIST."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from mnistnn.errors import ConfigError
from mnistnn.model.affine import affine_maps, warp
from mnistnn.model.augment import AugmentSettings, augment_epoch, describe
from mnistnn.model.elastic import elastic_displacements
from tests.conftest import Arrays

SIDE = 28
CENTRE = 13.5
IDENTITY = AugmentSettings(
    rotation_degrees=0, shift_pixels=0, scale=0, shear_degrees=0, elastic_fraction=0
)


@pytest.fixture(scope="module")
def digits(mnist_test: Arrays) -> np.ndarray:
    """The first 200 real test digits (read-only)."""
    return mnist_test[0][:200]


def only(**changes: float) -> AugmentSettings:
    """Identity settings with just the named distortions switched on."""
    return AugmentSettings.from_dict({**IDENTITY.to_dict(), **changes})


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(n, 2) ink-weighted (row, column) centres."""
    ink = images.reshape(-1, SIDE, SIDE).astype(np.float64)
    grid = np.arange(SIDE, dtype=np.float64)
    total = ink.sum(axis=(1, 2))
    return np.stack([(ink.sum(2) @ grid) / total, (ink.sum(1) @ grid) / total], axis=1)


def orientation_degrees(image: np.ndarray) -> float:
    """Principal-axis angle of the ink, counter-clockwise from the x axis (y pointing up)."""
    ink = image.reshape(SIDE, SIDE).astype(np.float64)
    rows, cols = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    x, y = cols, -rows
    mx, my = (ink * x).sum() / ink.sum(), (ink * y).sum() / ink.sum()
    mu20 = (ink * (x - mx) ** 2).sum()
    mu02 = (ink * (y - my) ** 2).sum()
    mu11 = (ink * (x - mx) * (y - my)).sum()
    return math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02))


def one_affine(
    angle: float = 0.0,
    scale: float = 1.0,
    shear: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """affine_maps for a single image with explicit parameters."""
    return affine_maps(np.array([angle]), np.array([scale]), np.array([shear]), np.array([shift]))


# --- output contract -----------------------------------------------------------------------------


def test_output_is_a_new_uint8_array_of_the_same_shape(digits: np.ndarray) -> None:
    before = digits.copy()
    out = augment_epoch(digits, seed=1, epoch=0, settings=AugmentSettings())
    assert out.shape == digits.shape
    assert out.dtype == np.uint8
    assert out.flags.writeable
    assert not np.shares_memory(out, digits)
    assert np.array_equal(digits, before)  # read-only input, untouched
    assert out.min() >= 0 and out.max() <= 255
    assert out.max() > 200  # strokes keep their full intensity


def test_empty_input_gives_empty_output() -> None:
    out = augment_epoch(np.zeros((0, 784), np.uint8), seed=0, epoch=0, settings=AugmentSettings())
    assert out.shape == (0, 784)


def test_identity_settings_return_the_input_exactly(digits: np.ndarray) -> None:
    out = augment_epoch(digits, seed=3, epoch=5, settings=IDENTITY)
    assert np.array_equal(out, digits)


def test_disabled_returns_a_copy(digits: np.ndarray) -> None:
    out = augment_epoch(digits, seed=3, epoch=5, settings=AugmentSettings(enabled=False))
    assert np.array_equal(out, digits)
    assert not np.shares_memory(out, digits)


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_and_epoch_give_identical_bytes(digits: np.ndarray) -> None:
    first = augment_epoch(digits, seed=7, epoch=2, settings=AugmentSettings())
    again = augment_epoch(digits.copy(), seed=7, epoch=2, settings=AugmentSettings())
    assert first.tobytes() == again.tobytes()


def test_epochs_and_seeds_differ(digits: np.ndarray) -> None:
    settings = AugmentSettings()
    base = augment_epoch(digits, seed=7, epoch=2, settings=settings)
    next_epoch = augment_epoch(digits, seed=7, epoch=3, settings=settings)
    other_seed = augment_epoch(digits, seed=8, epoch=2, settings=settings)
    for other in (next_epoch, other_seed):
        differing = (other != base).any(axis=1).mean()
        assert differing > 0.95


@pytest.mark.parametrize(("workers", "chunk_size"), [(1, 1), (1, 7), (1, 64), (2, 13), (3, 50)])
def test_chunking_and_threads_do_not_change_a_byte(
    digits: np.ndarray, workers: int, chunk_size: int
) -> None:
    settings = AugmentSettings(elastic_fraction=0.7)
    whole = augment_epoch(digits, seed=11, epoch=4, settings=settings, chunk_size=len(digits))
    split = augment_epoch(
        digits, seed=11, epoch=4, settings=settings, workers=workers, chunk_size=chunk_size
    )
    assert np.array_equal(split, whole)


def test_turning_one_distortion_off_keeps_the_others_draws(digits: np.ndarray) -> None:
    """All parameters are drawn whatever the settings: shift-only equals full minus the rest."""
    shift_only = augment_epoch(digits, seed=5, epoch=1, settings=only(shift_pixels=2))
    again = augment_epoch(
        digits, seed=5, epoch=1, settings=only(shift_pixels=2, elastic_alpha=0, elastic_fraction=1)
    )
    assert np.array_equal(shift_only, again)


# --- digit-likeness on real MNIST ----------------------------------------------------------------


def test_default_augmentation_changes_digits_but_keeps_them_digit_like(digits: np.ndarray) -> None:
    out = augment_epoch(digits, seed=0, epoch=0, settings=AugmentSettings())
    mean_abs_diff = np.abs(out.astype(np.int16) - digits).mean()
    assert mean_abs_diff > 10.0
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(digits), axis=1)
    assert np.percentile(moved, 95) < 3.5  # shift ±2 px per axis plus a little elastic drift
    assert moved.max() < 5.5
    assert_ink_roughly_kept(out, digits)


def assert_ink_roughly_kept(out: np.ndarray, digits: np.ndarray) -> None:
    """Total ink within ±40% for 95% of the digits; none vanishes or blows up."""
    ink_ratio = out.sum(axis=1, dtype=np.int64) / digits.sum(axis=1, dtype=np.int64)
    assert np.percentile(ink_ratio, 2.5) > 0.6 and np.percentile(ink_ratio, 97.5) < 1.4
    assert ink_ratio.min() > 0.4 and ink_ratio.max() < 2.3
    assert 0.9 < np.median(ink_ratio) < 1.1


def test_shift_only_moves_the_centre_of_mass_by_at_most_the_range(digits: np.ndarray) -> None:
    out = augment_epoch(digits, seed=0, epoch=0, settings=only(shift_pixels=2))
    delta = centre_of_mass(out) - centre_of_mass(digits)
    assert np.abs(delta).max() <= 2.1
    assert np.abs(delta).mean() > 0.5  # uniform in [-2, 2]: mean |shift| is 1
    ink_ratio = out.sum(axis=1, dtype=np.int64) / digits.sum(axis=1, dtype=np.int64)
    assert np.abs(ink_ratio - 1).max() < 0.05  # bilinear shifts conserve ink up to rounding


def test_rotation_only_keeps_centre_and_ink(digits: np.ndarray) -> None:
    out = augment_epoch(digits, seed=0, epoch=0, settings=only(rotation_degrees=10))
    assert (out != digits).any(axis=1).all()
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(digits), axis=1)
    assert moved.max() < 1.0  # MNIST digits are centred, and rotation is about the centre
    ink_ratio = out.sum(axis=1, dtype=np.int64) / digits.sum(axis=1, dtype=np.int64)
    assert np.abs(ink_ratio - 1).max() < 0.06


def test_elastic_only_bends_strokes_without_moving_the_digit(digits: np.ndarray) -> None:
    out = augment_epoch(digits, seed=0, epoch=0, settings=only(elastic_fraction=1))
    assert (out != digits).any(axis=1).all()
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(digits), axis=1)
    assert np.median(moved) < 1.5  # the smoothed field has a small mean: a slight drift
    assert moved.max() < 4.5
    assert_ink_roughly_kept(out, digits)


def test_elastic_fraction_is_the_share_of_distorted_images(digits: np.ndarray) -> None:
    """With no affine jitter, the images without an elastic field come back exactly."""
    out = augment_epoch(digits, seed=2, epoch=0, settings=only(elastic_fraction=0.5))
    unchanged = (out == digits).all(axis=1).mean()
    assert 0.38 < unchanged < 0.62


def test_rotation_turns_a_one_counter_clockwise(mnist_test: Arrays) -> None:
    pixels, labels = mnist_test
    ones = pixels[labels == 1][:20]
    turned = warp(
        ones,
        affine_maps(np.full(20, 10.0), np.ones(20), np.zeros(20), np.zeros((20, 2))),
    )
    change = [
        orientation_degrees(after) - orientation_degrees(before)
        for before, after in zip(ones, turned, strict=True)
    ]
    assert np.median(change) == pytest.approx(10.0, abs=1.0)


# --- exact geometry of the low-level maps --------------------------------------------------------


def test_identity_map_is_the_exact_integer_grid() -> None:
    coords = one_affine()
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    assert coords.dtype == np.float32
    assert np.array_equal(coords[0, 0], rows)
    assert np.array_equal(coords[0, 1], cols)


def test_integer_shift_equals_a_roll_with_zero_fill(digits: np.ndarray) -> None:
    image = digits[0].reshape(SIDE, SIDE)
    out = warp(digits[:1], one_affine(shift=(2.0, -3.0))).reshape(SIDE, SIDE)
    expected = np.roll(image, (2, -3), axis=(0, 1))
    expected[:2, :] = 0
    expected[:, -3:] = 0
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_right_angle_rotation_equals_rot90(digits: np.ndarray, quarter_turns: int) -> None:
    image = digits[1].reshape(SIDE, SIDE)
    out = warp(digits[1:2], one_affine(angle=90.0 * quarter_turns)).reshape(SIDE, SIDE)
    assert np.array_equal(out, np.rot90(image, quarter_turns))


@pytest.mark.parametrize(
    ("angle", "scale", "shear", "shift"),
    [(0, 1.3, 0, (0, 0)), (0, 1, 20, (0, 0)), (-17, 0.85, 8, (1.5, -0.25)), (33, 1.1, -12, (0, 2))],
)
def test_maps_invert_the_documented_forward_transform(
    angle: float, scale: float, shear: float, shift: tuple[float, float]
) -> None:
    """Forward: scale, shear x by tan(shear) * y, rotate counter-clockwise on screen, shift."""
    source = one_affine(angle, scale, shear, shift)[0].astype(np.float64)
    x, y = source[1] - CENTRE, -(source[0] - CENTRE)  # y up, so counter-clockwise is positive
    x, y = scale * x, scale * y
    x = x - math.tan(math.radians(shear)) * y  # = x + tan * (y down)
    theta = math.radians(angle)
    x, y = x * math.cos(theta) - y * math.sin(theta), x * math.sin(theta) + y * math.cos(theta)
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    np.testing.assert_allclose(CENTRE - y + shift[0], rows, atol=1e-4)
    np.testing.assert_allclose(CENTRE + x + shift[1], cols, atol=1e-4)


def test_warp_matches_scipy_bilinear_with_zero_fill(digits: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    images = digits[:20]
    coords = one_affine(12.0, 1.1, 5.0, (0.7, -1.3)).repeat(20, axis=0)
    coords += rng.uniform(-2, 2, coords.shape).astype(np.float32)
    coords[3] += 20.0  # mostly outside the image
    ours = warp(images, coords).astype(np.int16)
    for image, where, got in zip(images, coords, ours, strict=True):
        expected = ndimage.map_coordinates(
            image.reshape(SIDE, SIDE).astype(np.float64),
            where.astype(np.float64),
            order=1,
            mode="grid-constant",
            cval=0.0,
        )
        assert np.abs(np.rint(expected).reshape(-1) - got).max() <= 1  # float32 ties


def test_warp_rejects_mismatched_coordinates(digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="coords"):
        warp(digits[:3], one_affine())


def test_warp_does_not_modify_its_arguments(digits: np.ndarray) -> None:
    coords = one_affine(angle=30.0) + np.float32(40.0)
    before = coords.copy()
    warp(digits[:1], coords)
    assert np.array_equal(coords, before)


def test_elastic_field_is_alpha_times_the_gaussian_smoothed_noise() -> None:
    noise = np.random.default_rng(1).uniform(-1, 1, (3, 2, SIDE, SIDE)).astype(np.float32)
    ours = elastic_displacements(noise, alpha=34.0, sigma=4.0)
    expected = 34.0 * ndimage.gaussian_filter(
        noise.astype(np.float64), sigma=(0, 0, 4, 4), mode="constant"
    )
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    centre = ours[:, :, 10:18, 10:18]
    assert 1.0 < centre.std() < 2.0  # over the digit ~1.4 px: bends strokes, does not tear them
    assert np.abs(ours[:, :, 0, :]).mean() < np.abs(centre).mean()  # fades towards the border


# --- settings ------------------------------------------------------------------------------------


def test_settings_round_trip_and_normalise_numbers() -> None:
    settings = AugmentSettings.from_dict({"rotation_degrees": 5, "elastic_fraction": 1})
    assert settings.rotation_degrees == 5.0
    assert isinstance(settings.rotation_degrees, float)
    assert AugmentSettings.from_dict(settings.to_dict()) == settings
    assert AugmentSettings().to_dict()["elastic_alpha"] == 34.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rotation_degrees", -1.0),
        ("rotation_degrees", 181.0),
        ("shift_pixels", float("nan")),
        ("scale", 1.0),
        ("shear_degrees", 60.0),
        ("elastic_alpha", -3.0),
        ("elastic_sigma", 0.0),
        ("elastic_fraction", 1.5),
        ("scale", "0.1"),
        ("shift_pixels", True),
    ],
)
def test_invalid_settings_name_the_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field) as raised:
        AugmentSettings(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_invalid_enabled_and_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="enabled"):
        AugmentSettings(enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rotation"):
        AugmentSettings.from_dict({"rotation": 5})


@pytest.mark.parametrize(
    ("pixels", "kwargs", "message"),
    [
        (np.zeros((2, 784), np.float32), {}, "uint8"),
        (np.zeros((2, 28, 28), np.uint8), {}, "shape"),
        (np.zeros((2, 784), np.uint8), {"seed": -1}, "seed"),
        (np.zeros((2, 784), np.uint8), {"epoch": 1.5}, "epoch"),
        (np.zeros((0, 784), np.uint8), {"seed": True}, "seed"),
        (np.zeros((2, 784), np.uint8), {"workers": 0}, "workers"),
        (np.zeros((2, 784), np.uint8), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_invalid_arguments_are_rejected(
    pixels: np.ndarray, kwargs: dict[str, Any], message: str
) -> None:
    arguments = {"seed": 0, "epoch": 0, "settings": AugmentSettings(), **kwargs}
    with pytest.raises(ValueError, match=message):
        augment_epoch(pixels, **arguments)


def test_describe_is_one_line_naming_the_ranges() -> None:
    text = describe(AugmentSettings())
    assert "\n" not in text
    for part in ("±10°", "±2 px", "±10%", "α=34", "σ=4", "50%"):
        assert part in text
    assert describe(AugmentSettings(enabled=False)) == "no augmentation"
    assert "no elastic" in describe(only(rotation_degrees=5))
