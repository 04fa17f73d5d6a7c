"""Peak RSS beside decoded size: ingest and the scoring reader on growing inputs and on bombs.

Each case runs in a child process under the default limits (`mnistnn.limits`), measured with
`os.wait4` (its own `ru_maxrss`): valid MNIST rows as gzip files of growing size (multi-member
gzip, so building a 1.8 GB text costs a few MB of disk), then the hostile ones (2 GB of NUL
bytes, a 2 GB line, 1,200,000 valid rows). Bounded means the peak follows the limits, not the
decoded size.

    python -m benchmarks.bench_hostile            # up to 1,000,000 rows (a few minutes)
    python -m benchmarks.bench_hostile --quick    # 1,000 rows and the NUL bomb, ingest only
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import TRAIN_CSV

_CHILD = """
import sys
from pathlib import Path
from mnistnn.errors import DataError, one_line
mode, path, out = sys.argv[1:]
try:
    if mode == "ingest":
        from mnistnn.data.ingest import ingest_csv
        summary = ingest_csv(path, out)
        print(f"accepted {summary.rows_accepted:,} rows")
    else:
        from mnistnn.predict.inputs import InboxInput
        from mnistnn.predict.readers import read_chunks
        item = InboxInput(Path(path).name, path, "csv", Path(path).stat().st_size)
        rows = sum(len(chunk) for chunk in read_chunks(item))
        print(f"read {rows:,} rows")
except DataError as exc:
    print("refused: " + one_line(exc)[:70])
"""


def members(text: bytes, count: int) -> bytes:
    return gzip.compress(text, compresslevel=6) * count


def mnist_rows(rows: int) -> bytes:
    """`rows` lines of the bundled train file (labelled; the scoring reader takes pixels)."""
    with gzip.open(TRAIN_CSV, "rb") as handle:
        return b"".join(handle.readline() for _ in range(rows))


def measure(mode: str, path: Path, folder: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, outcome) of one child."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, str(path), str(folder / f"out-{path.stem}")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    outcome = child.stdout.read().strip()
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0  # reaped by wait4
    return time.perf_counter() - started, usage.ru_maxrss / 1024, outcome


def cases(quick: bool, folder: Path) -> list[tuple[str, Path, int]]:
    """(label, file, decoded bytes) for each input."""
    block = mnist_rows(1000)
    pixels = b"\n".join(line.split(b",", 1)[1] for line in block.splitlines()) + b"\n"
    made = []
    sizes = (1,) if quick else (10, 100, 300, 1000)
    kinds = (("labelled", block),) if quick else (("labelled", block), ("pixels", pixels))
    for thousands in sizes:
        for kind, text in kinds:
            path = folder / f"{kind}-{thousands}k.csv.gz"
            path.write_bytes(members(text, thousands))
            made.append((f"{thousands:,}k valid rows ({kind})", path, len(text) * thousands))
    bombs = [("2 GB of NUL bytes", bytes(1 << 20), 2000)]
    if not quick:
        bombs += [("one 2 GB line", b"1" * (1 << 20), 2000), ("1,200,000 rows", block, 1200)]
    for label, text, count in bombs:
        path = folder / f"bomb-{len(made)}.csv.gz"
        path.write_bytes(members(text, count))
        made.append((label, path, len(text) * count))
    return made


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for label, path, decoded in cases(args.quick, folder):
            mode = "score" if "(pixels)" in label else "ingest"
            seconds, peak, outcome = measure(mode, path, folder)
            rows.append(
                (
                    f"{mode:<6} {label}",
                    f"{peak:,.0f} MB",
                    f"decoded {decoded / 1e6:,.0f} MB, {seconds:.1f} s: {outcome}",
                )
            )
            if "bomb" in path.name and not args.quick:  # the scoring reader too
                seconds, peak, outcome = measure("score", path, folder)
                rows.append(
                    (
                        f"score  {label}",
                        f"{peak:,.0f} MB",
                        f"decoded {decoded / 1e6:,.0f} MB, {seconds:.1f} s: {outcome}",
                    )
                )
    common.print_table("Peak RSS (child process) beside decoded size, default limits", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
