"""`mnistnn train` as a user runs it: a 1-epoch run, then the same command again (nothing to train).

Each run is a fresh process with its own data folder and Prefect home (created by a first,
untimed run; --quick copies a migrated database into it instead), so the wall time includes
Python and Prefect start-up. Reported: the re-run's wall time as a share of the 1-epoch run's
(target < 15%: it answers from disk without a server), and the start-up share of the 1-epoch
run (wall minus the flow body's stages). `--before PATH` runs the same with another checkout
on PYTHONPATH (e.g. main) in the same benchmark, interleaved.
`python -m benchmarks.bench_cli [--quick] [--repeats N] [--before PATH]`
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, TEST_CSV, TRAIN_CSV, child_env, parser, print_table, quick_csvs
from tests.prefect_home import new_prefect_home


def home_of(tree: Path, workdir: Path) -> Path:
    """The Prefect home of every run of `tree`'s CLI."""
    return workdir / f"home-{tree.name}"


def train(
    tree: Path, workdir: Path, data: Path, csvs: tuple[Path, Path], quick: bool
) -> tuple[dict, float]:
    env = {**child_env(home_of(tree, workdir), quick), "PYTHONPATH": str(tree)}
    command = [
        str(Path(sys.executable).parent / "mnistnn"),
        *("--data-dir", str(data), "train", "--train-csv", str(csvs[0])),
        *("--test-csv", str(csvs[1]), "--epochs", "1", "--json"),
    ]
    started = time.perf_counter()
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - started


def spread(values: list[float], unit: str = "s") -> str:
    return f"{statistics.median(values):.2f} {unit} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 1)")
    arguments.add_argument("--before", type=Path, default=None)
    args = arguments.parse_args()
    # --quick only checks that it runs: one repeat (each is two CLI runs)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        csvs = quick_csvs(workdir) if args.quick else (TRAIN_CSV, TEST_CSV)
        figures: dict[str, dict[str, list[float]]] = {}
        for name, tree in trees.items():  # the Prefect home's database, untimed
            if args.quick:  # --quick only checks that it runs: a migrated copy will do
                new_prefect_home(home_of(tree, workdir))
            else:
                train(tree, workdir, workdir / f"warm-{name}", csvs, args.quick)
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                data = workdir / f"data-{name}-{repeat}"
                first, wall = train(tree, workdir, data, csvs, args.quick)
                again, again_wall = train(tree, workdir, data, csvs, args.quick)
                got = figures.setdefault(name, {"wall": [], "startup": [], "again": []})
                got["wall"].append(wall)
                got["startup"].append((wall - sum(first["timings"].values())) / wall)
                got["again"].append(again_wall / wall)
                print(name, round(wall, 2), round(again_wall, 2), again.get("ran"), flush=True)
    rows = []
    for name, got in figures.items():
        rows += [
            (f"{name}: 1-epoch `mnistnn train` (wall)", spread(got["wall"]), ""),
            (f"{name}:   start-up share of it", spread(got["startup"], "x"), ""),
            (f"{name}: same command again / 1-epoch run", spread(got["again"], "x"), "< 0.15"),
        ]
    print_table(f"mnistnn train from the CLI ({args.repeats} repeats, median [min-max])", rows)


if __name__ == "__main__":
    main()
