"""Seconds to augment the training images (affine + elastic, one resampling), 1 and 2 workers.

Augmentation runs once per epoch, so it must cost well under a training epoch. Every figure is
measured in this run on the real bundled data; the per-image scipy.ndimage.map_coordinates loop
is timed on a slice as the naive baseline. `python -m benchmarks.bench_augment [--quick]`;
`--preview PNG` also saves 8 digits with 3 augmented versions each, to eyeball the distortions.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from benchmarks.common import QUICK_ROWS, TRAIN_CSV, best_of, parser, print_table
from mnistnn.data.fast_csv import read_csv
from mnistnn.model.affine import affine_maps
from mnistnn.model.augment import AugmentSettings, augment_epoch, describe
from mnistnn.types import PixelArray

BASELINE_ROWS = 2000  # the per-image scipy loop is timed on a slice and scaled


def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--preview", type=Path, help="save a PNG of augmented digits here")
    args = options.parse_args()
    pixels, _ = read_csv(TRAIN_CSV)
    if args.quick:
        pixels = pixels[:QUICK_ROWS]
    settings = AugmentSettings()
    n = len(pixels)
    repeats = 1 if args.quick else 3
    augment_epoch(pixels[:500], seed=0, epoch=0, settings=settings)  # warm caches and BLAS

    rows: list[tuple[str, str, str]] = []
    baseline = _baseline_seconds(pixels[:BASELINE_ROWS], settings) * n / min(n, BASELINE_ROWS)
    rows.append(("scipy map_coordinates per image (affine)", f"{baseline:.3f} s", "baseline"))
    for label, variant in (
        ("affine only", AugmentSettings(elastic_fraction=0)),
        ("default: affine + elastic on 50%", settings),
        ("affine + elastic on 100%", AugmentSettings(elastic_fraction=1)),
    ):
        for workers in (1, 2):
            seconds = best_of(
                repeats,
                functools.partial(
                    augment_epoch, pixels, seed=0, epoch=1, settings=variant, workers=workers
                ),
            )
            per_thousand = seconds * 1000 / n * 1000
            rows.append(
                (
                    f"{label}, {workers} worker{'s' if workers > 1 else ''}",
                    f"{seconds:.3f} s",
                    f"{per_thousand:.1f} ms per 1,000 images",
                )
            )
    print_table(f"augment seconds for {n} images  [{describe(settings)}]", rows)
    if args.preview:
        save_preview(pixels[:8], settings, args.preview)
        print(f"\npreview saved to {args.preview}")


def _baseline_seconds(pixels: PixelArray, settings: AugmentSettings) -> float:
    """The naive way: one scipy map_coordinates call per image (affine maps only)."""
    k = len(pixels)
    rng = np.random.default_rng(0)
    coords = affine_maps(
        rng.uniform(-1, 1, k) * settings.rotation_degrees,
        1 + rng.uniform(-1, 1, k) * settings.scale,
        rng.uniform(-1, 1, k) * settings.shear_degrees,
        rng.uniform(-1, 1, (k, 2)) * settings.shift_pixels,
    )
    images = pixels.reshape(k, 28, 28).astype(np.float32)

    def loop() -> None:
        for image, where in zip(images, coords, strict=True):
            ndimage.map_coordinates(image, where, order=1, mode="grid-constant", cval=0.0)

    return best_of(1, loop)


def save_preview(originals: PixelArray, settings: AugmentSettings, path: Path) -> None:
    """A grid: one row per digit, the original then three augmented epochs."""
    versions = [augment_epoch(originals, seed=0, epoch=e, settings=settings) for e in range(3)]
    figure = Figure(figsize=(4 * 1.3, len(originals) * 1.3), dpi=100)
    axes = figure.subplots(len(originals), 4)
    for row, original in enumerate(originals):
        for column, image in enumerate([original, *(v[row] for v in versions)]):
            axis = axes[row, column]
            axis.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title("original" if column == 0 else f"epoch {column - 1}", fontsize=9)
    figure.suptitle(describe(settings).replace("; ", "\n"), fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
