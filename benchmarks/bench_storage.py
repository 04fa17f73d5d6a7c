"""Checkpoint I/O per epoch through the storage layer: local folder vs loopback S3 (SeaweedFS).

What a training epoch adds besides training: write its checkpoint (weights `.npz`, then the
JSON vouching for their sha256) and, in the next epoch's task, read the previous checkpoint back
and verify its sha256 (`save_checkpoint` + `load_checkpoint`). Beside it the default
configuration's epoch time measured in this run (scaled from the slice with `--quick`), and the
old direct-file path (temp file + rename, `Path.read_bytes`) against the Store path locally.
SeaweedFS is started by the benchmark (tests/seaweed.py); without the `weed` binary the S3 rows
are skipped with the reason. `python -m benchmarks.bench_storage [--quick]`.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from benchmarks.common import QUICK_ROWS, TRAIN_CSV, best_of, parser, print_table, start_bucket
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.core.files import write_bytes_atomic, write_json_atomic
from mnistnn.data.fast_csv import read_csv
from mnistnn.model import checkpoint

FULL_ROWS = 60_000


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    repeats = 3 if args.quick else 5
    pixels, labels = read_csv(TRAIN_CSV)
    rows_used = QUICK_ROWS if args.quick else len(labels)
    network = NeuralNetwork(NetworkConfig())
    network.train_epoch(pixels[:100], labels[:100])  # compile / warm up
    epoch = best_of(1, lambda: network.train_epoch(pixels[:rows_used], labels[:rows_used]))
    epoch *= FULL_ROWS / rows_used
    rows = [
        (
            f"default epoch ({'scaled from ' + str(rows_used) if args.quick else 'full'})",
            f"{epoch:.3f} s",
            "",
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old = best_of(repeats, lambda: _old_direct(root / "old", network))
        new = best_of(repeats, lambda: _store_path(str(root / "new"), network))
        rows.append(("local: old direct files, save + load", f"{old * 1000:.1f} ms", ""))
        rows.append(
            ("local: Store path, save + load", f"{new * 1000:.1f} ms", f"{new / old:.2f}x old")
        )
        rows.append(("local overhead / epoch", f"{100 * new / epoch:.2f} %", ""))
        rows += _s3_rows(root, network, epoch, repeats)
    print_table("checkpoint write + verify per epoch (784-88-10 float64 weights)", rows)


def _old_direct(folder: Path, network: NeuralNetwork) -> None:
    """What checkpoint.py did before the storage layer: atomic files, then read back."""
    data = checkpoint.weights_bytes(network)
    write_bytes_atomic(folder / "epoch-0001.npz", data)
    write_json_atomic(
        folder / "epoch-0001.json", {"weights_sha256": hashlib.sha256(data).hexdigest()}
    )
    back = (folder / "epoch-0001.npz").read_bytes()
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
    checkpoint.weights_from_bytes(back, str(folder))


def _store_path(directory: str, network: NeuralNetwork) -> None:
    meta = checkpoint.save_checkpoint(directory, 1, network, {"train_seconds": 0.0})
    checkpoint.load_checkpoint(meta)


def _s3_rows(
    root: Path, network: NeuralNetwork, epoch: float, repeats: int
) -> list[tuple[str, str, str]]:
    try:
        server, bucket = start_bucket(root / "seaweed")
    except (ImportError, RuntimeError) as exc:
        print(f"S3 rows skipped: {exc}")
        return [("S3 (SeaweedFS)", "skipped", str(exc)[:40])]
    try:
        url = f"{bucket}/ck"
        _store_path(url, network)  # connect once (as a run does: one client per store)
        s3 = best_of(repeats, lambda: _store_path(url, network))
    finally:
        server.stop()
    return [
        ("loopback S3: save + load", f"{s3 * 1000:.1f} ms", ""),
        ("loopback S3 overhead / epoch", f"{100 * s3 / epoch:.2f} %", "target < 25 %"),
    ]


if __name__ == "__main__":
    main()
