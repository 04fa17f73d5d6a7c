"""Read MNIST CSV files (label, then 784 pixels; plain or .gz) into uint8 arrays, fast.

This is the trusted fast path for well-formed files (the bundled data, benchmarks, tests).
Untrusted files go through `mnistnn.data.ingest`, which validates every row and keeps the rejects.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mnistnn.config import INPUT_NODES
from mnistnn.errors import DataError
from mnistnn.types import LabelArray, PixelArray

N_COLUMNS = INPUT_NODES + 1


def read_csv(path: str | os.PathLike[str]) -> tuple[PixelArray, LabelArray]:
    """Read an MNIST CSV without header into X (n, 784) uint8 and y (n,) uint8.

    Raises DataError naming the file when it is missing or not of that shape and range.
    """
    source = Path(path)
    if not source.is_file():
        raise DataError(f"{source}: no such file")
    names = [f"c{i}" for i in range(N_COLUMNS)]
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.uint8())),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{source}: not a clean MNIST CSV ({first_line}); "
            "`mnistnn ingest` validates it and lists each bad row"
        ) from exc
    # Columns are contiguous in Arrow: copy each into a row of a column-major block, then
    # transpose once (3x faster than writing 785 strided columns of the row-major result).
    table = table.combine_chunks()
    columns = np.empty((N_COLUMNS, table.num_rows), dtype=np.uint8)
    for index, column in enumerate(table.columns):
        columns[index] = column.chunk(0).to_numpy(zero_copy_only=False) if table.num_rows else 0
    return np.ascontiguousarray(columns[1:].T), columns[0].copy()
