"""Array type aliases shared by the library (shapes are given in each function's docstring)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
PixelArray = npt.NDArray[np.uint8]
LabelArray = npt.NDArray[np.uint8]
IntArray = npt.NDArray[np.integer[Any]]
