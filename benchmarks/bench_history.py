"""A simulated year: nightly fixed overhead and inbox rescans as history grows, disk with and
without gc.

Three measurements in one process (`benchmarks.history_sim` simulates the nights; batches of
20 rows, so large counts are cheap):

1. The scan alone: a watch pass with nothing new (`scan_inbox(only_new=True)`, the pass of
   `mnistnn watch --once` after start-up), timed inside the process, best of 5, at 10, 100,
   1,000 and 10,000 batches in one local inbox (and on SeaweedFS up to 1,000, when `weed`
   is installed). Headline: the time at the largest count over the time at 10.
2. Nightly fixed overhead (everything but training, evaluation and scoring: the watch pass,
   ingest + inbox scan + snapshot manifest + drift check of the new batch, registration and
   promotion, `models list`, the report) of one night at 10 batches / 10 versions and at
   1,000 batches / 300 versions (the versions registered directly, the batches ingested by
   one scan), each the median of 3 nights (1 with --quick, and no report figures there).
3. N simulated nights, then `gc --apply` (keep 10; 3 with --quick): disk before and after,
   and a check that the champion and the challenger serve exactly as before and the champion
   retrains bit-identically from its kept snapshot.

    python -m benchmarks.bench_history          # scan to 10,000; overhead 1,000 x 300; 50 nights
    python -m benchmarks.bench_history --quick  # scan to 40; overhead 40 x 20; 6 nights, keep 3
    python -m benchmarks.bench_history --scan-to 1000   # the full one without the 10,000 scan
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    TEST_CSV,
    TRAIN_CSV,
    best_of,
    parser,
    print_table,
    start_bucket,
)
from benchmarks.history_sim import FIXED, History, csv_bytes, retrain


def scan_times(root: str | Path, scratch: Path, pool, counts: list[int]) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """Seconds of a watch pass with nothing new, at each batch count (batches added between)."""
    from mnistnn.core import locations
    from mnistnn.data.inbox import scan_inbox

    history = History(root, scratch, pool)
    paths, times, landed = history.paths, {}, 0
    for count in counts:
        for index in range(landed, count):
            target = locations.join(paths.incoming, f"batch-{index:05d}.csv")
            locations.write_bytes(target, csv_bytes(*history.rows(index)))
            if isinstance(target, Path):
                os.utime(target, (time.time() - 3600, time.time() - 3600))
        landed = count
        if isinstance(paths.incoming, Path):  # landed an hour ago, like its files (not racy)
            os.utime(paths.incoming, (time.time() - 3600, time.time() - 3600))
        scan_inbox(paths.incoming, paths, settle_seconds=0, only_new=True)  # ingests them
        best = []
        for _ in range(5):
            started = time.perf_counter()
            assert scan_inbox(paths.incoming, paths, settle_seconds=0, only_new=True) == []
            best.append(time.perf_counter() - started)
        times[count] = min(best)
    return times


def overhead(  # type: ignore[no-untyped-def]
    scratch: Path, pool, batches: int, versions: int, nights: int = 3, report: bool = True
) -> dict[str, float]:
    """Median seconds of each fixed step of `nights` nights after `batches` batches and
    `versions` versions (the report's figures skipped without `report`)."""
    from mnistnn import NeuralNetwork
    from mnistnn.data.inbox import scan_inbox
    from mnistnn.registry.store import ModelRegistry

    history = History(scratch / "data", scratch / "scratch", pool)
    for index in range(batches):
        history.land(10_000 + index)
    scan_inbox(history.paths.incoming, history.paths, settle_seconds=0)
    history.nightly_run(report=False)  # the base ingested, one real version
    registry = ModelRegistry(history.paths.models)
    champion = registry.load()
    version = registry.champion()
    assert version is not None
    rng = np.random.default_rng(1)
    for _ in range(versions - 1):
        network = NeuralNetwork(champion.config)
        network.w_input_hidden[...] = champion.w_input_hidden + rng.normal(0, 1e-3, (16, 784))
        network.w_hidden_output[...] = champion.w_hidden_output
        registry.register(
            network,
            metrics={"accuracy": version.accuracy - 0.01, "confident": 0.5, "mse": 0.1},
            test_sha256=version.test_sha256,
            train_sha256=version.train_sha256,
        )
    measured = [
        history.night(20_000 + night, score=False, report=report) for night in range(nights)
    ]
    steps = (*FIXED, "recent data")
    return {step: statistics.median(n.get(step, 0.0) for n in measured) for step in steps}


def registry_reads(root: Path, counts: list[int]) -> dict[int, dict[str, float]]:
    """Seconds (best of 5) of each registry read a night makes, at each number of versions: the
    `models list` and `models history` reads, the champion and challenger lookup of scoring,
    the weights lookup of the no-server answer (a finished run's weights found registered), and
    one registration."""
    from mnistnn import NetworkConfig, NeuralNetwork
    from mnistnn.cli.models import HISTORY, LAST
    from mnistnn.core.files import sha256_bytes
    from mnistnn.model.checkpoint import weights_bytes
    from mnistnn.registry.store import ModelRegistry

    registry = ModelRegistry(root)
    rng = np.random.default_rng(2)
    network = NeuralNetwork(NetworkConfig(hidden_nodes=4, seed=0))
    first = sha256_bytes(weights_bytes(network))

    def register() -> None:
        network.w_hidden_output[...] = rng.normal(0, 0.1, network.w_hidden_output.shape)
        metrics = {"accuracy": 0.9 if registry.names() else 0.95}
        registry.register(network, metrics=metrics, test_sha256="a" * 64, train_sha256="b" * 64)

    def lookup() -> None:  # what scoring's resolve-models reads
        champion, challenger = registry.pinned()
        assert champion is not None and challenger is not None

    times: dict[int, dict[str, float]] = {}
    for count in counts:
        while len(registry.names()) < count - 1:
            register()
        times[count] = {
            "register": best_of(1, register),  # the count-th version
            "models list": best_of(5, lambda: registry.newest(LAST)),
            "models history": best_of(5, lambda: registry.history(HISTORY)),
            "champion + challenger": best_of(5, lookup),
            "answer's weights lookup": best_of(5, lambda: registry.find_by_weights(first)),
        }
    return times


def year(scratch: Path, pool, nights: int, keep: int = 10) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """`nights` nights, then gc keeping `keep` versions: disk and the kept models' checks."""
    from mnistnn.core import locations
    from mnistnn.registry import retention
    from mnistnn.registry.store import ModelRegistry
    from mnistnn.runs.folders import RunFolder

    history = History(scratch / "data", scratch / "scratch", pool)
    for night in range(nights):
        history.night(night, score=night % 5 == 4, report=False)
    registry = ModelRegistry(history.paths.models)
    kept = retention.kept_versions(registry.versions(), keep)
    pixels = history.pixels[-200:]
    served = {v: registry.load(v).query(pixels).tobytes() for v in kept}
    before = history.disk()
    done = retention.apply(
        history.paths, retention.Policy(keep=keep), now=time.time() + 100 * 86400
    )
    after = history.disk()
    same = all(registry.load(v).query(pixels).tobytes() == served[v] for v in kept)
    champion = registry.champion()
    assert champion is not None and champion.run_dir is not None
    run = json.loads(locations.read_bytes(RunFolder(champion.run_dir).run_json))
    again = hashlib.sha256(retrain(scratch / "again", run, champion.config)).hexdigest()
    identical = again == champion.weights_sha256
    return [
        (f"disk after {nights} nights, without gc", f"{before / 1e6:.1f} MB", ""),
        (f"disk after gc --apply (keep {keep})", f"{after / 1e6:.1f} MB", f"{after / before:.2f}x"),
        ("items freed", str(len(done.deleted)), f"{len(done.skipped)} skipped"),
        ("kept models serve as before", "yes" if same else "NO", ", ".join(kept)),
        ("champion retrains bit-identically", "yes" if identical else "NO", champion.version),
    ]


def main() -> None:
    options = parser(__doc__.splitlines()[0])
    options.add_argument(
        "--scan-to", type=int, default=10000, help="the largest local inbox scanned (10,000)"
    )
    args = options.parse_args()
    from mnistnn.data.fast_csv import read_csv

    pixels, labels = read_csv(TEST_CSV if args.quick else TRAIN_CSV)  # quick: 10,000 rows to read
    pool = (pixels[:20000], labels[:20000])
    counts = [10, 40] if args.quick else [n for n in (10, 100, 1000, 10000) if n <= args.scan_to]
    rows: list[tuple[str, str, str]] = [("load average at start", f"{os.getloadavg()[0]:.1f}", "")]
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        scratch = Path(tmp)
        local = scan_times(scratch / "scan" / "data", scratch / "scan" / "s", pool, counts)
        rows += _scan_rows("local", local)
        rows += _s3_scan_rows(scratch, pool, [10, 20] if args.quick else [10, 100, 1000])
        nights, report = (1, False) if args.quick else (3, True)  # the figures take 10-16 s
        small = overhead(scratch / "o10", pool, 10, 10, nights, report)
        big_b, big_v = (40, 20) if args.quick else (1000, 300)
        big = overhead(scratch / "obig", pool, big_b, big_v, nights, report)
        for step in FIXED:
            label = f"nightly {step}, 10 / {big_b} batches"
            if step == "report" and not report:
                rows.append((label, "not timed", "(--quick: the figures take 10-16 s)"))
            else:
                rows.append((label, *_pair(small[step], big[step])))
        recent = f"(recent test data, grows like the data) 10 / {big_b}"
        rows.append((recent, *_pair(small["recent data"], big["recent data"])))
        plain = [step for step in FIXED if step != "report"]
        without = sum(small[s] for s in plain), sum(big[s] for s in plain)
        rows.append((f"fixed overhead without the report, 10 / {big_b}", *_pair(*without)))
        total_small, total_big = sum(small[s] for s in FIXED), sum(big[s] for s in FIXED)
        rows.append(
            (f"NIGHTLY FIXED OVERHEAD, 10 / {big_b} batches", *_pair(total_small, total_big))
        )
        reads = registry_reads(scratch / "registry", [10, 60] if args.quick else [10, 300, 1000])
        rows += _read_rows(reads)
        nights_kept = (6, 3) if args.quick else (50, 10)
        rows += year(scratch / "year", pool, *nights_kept)
    print_table("a simulated year (batches of 20 rows)", rows)


def _pair(small: float, big: float) -> tuple[str, str]:
    return f"{small * 1000:.1f} / {big * 1000:.1f} ms", f"{big / small:.2f}x (target <= 2x)"


def _read_rows(reads: dict[int, dict[str, float]]) -> list[tuple[str, str, str]]:
    counts = sorted(reads)
    rows = []
    for step in reads[counts[0]]:
        figures = " / ".join(f"{reads[n][step] * 1000:.2f}" for n in counts)
        ratio = reads[counts[-1]][step] / reads[counts[0]][step]
        what = f"registry {step}, {' / '.join(map(str, counts))} versions"
        rows.append((what, f"{figures} ms", f"{ratio:.2f}x (target <= 2x)"))
    return rows


def _scan_rows(where: str, times: dict[int, float]) -> list[tuple[str, str, str]]:
    first = times[min(times)]
    rows = [
        (f"{where} rescan, nothing new, {n} batches", f"{t * 1000:.2f} ms", "")
        for n, t in times.items()
    ]
    largest = max(times)
    rows.append(
        (
            f"{where.upper()} RESCAN GROWTH, {largest} / 10 batches",
            f"{times[largest] / first:.2f}x",
            "",
        )
    )
    return rows


def _s3_scan_rows(scratch: Path, pool, counts: list[int]) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    try:
        server, bucket = start_bucket(scratch / "seaweed")
    except (ImportError, RuntimeError) as exc:
        return [("S3 rescan", "skipped", str(exc)[:40])]
    try:
        times = scan_times(f"{bucket}/data", scratch / "s3scratch", pool, counts)
    finally:
        server.stop()
    return _scan_rows("SeaweedFS", times)


if __name__ == "__main__":
    main()
