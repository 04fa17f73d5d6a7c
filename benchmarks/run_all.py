"""Every benchmark, one after the other, then one table of all their figures.

`make bench` (full data) or `make bench-quick` (a tiny slice, to check that they run);
`--skip bench_a,bench_b` leaves some out.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BENCHMARKS = (
    "benchmarks.bench_train",
    "benchmarks.bench_threads",
    "benchmarks.bench_ingest",
    "benchmarks.bench_snapshot",
    "benchmarks.bench_augment",
    "benchmarks.bench_pipeline",
    "benchmarks.bench_flow_epochs",
    "benchmarks.bench_cli",
    "benchmarks.bench_sweep",
    "benchmarks.bench_scoring",
    "benchmarks.bench_storage",
    "benchmarks.bench_history",
)


def table_lines(output: str) -> list[str]:
    """A benchmark's table: its title line (it names the machine) and its indented rows."""
    return [
        line for line in output.splitlines() if line.startswith("  ") or "cores, Python" in line
    ]


@contextlib.contextmanager
def one_server_for_quick_runs(quick: bool) -> Iterator[None]:
    """--quick: one temporary Prefect server for every benchmark, given as PREFECT_API_URL (each
    would start its own, seconds apiece, and quick figures are not the point). A full run leaves
    each benchmark its own, as a user's first command has."""
    if not quick or os.environ.get("PREFECT_API_URL"):
        yield
        return
    from tests.prefect_home import new_prefect_home

    with tempfile.TemporaryDirectory() as home:
        os.environ["PREFECT_HOME"] = str(new_prefect_home(Path(home)))
        os.environ["MNISTNN_PREFECT_AUTODETECT"] = "0"
        from flows.server import prefect_api

        with prefect_api() as api:
            os.environ["PREFECT_API_URL"] = api.api_url
            try:
                yield
            finally:
                del os.environ["PREFECT_API_URL"]


def main() -> int:
    extra = sys.argv[1:]
    chosen = BENCHMARKS
    if "--skip" in extra:  # `--skip bench_cli,bench_sweep`: the rest (make test's quick run)
        at = extra.index("--skip")
        skipped = {f"benchmarks.{name}" for name in extra[at + 1].split(",")}
        unknown = skipped - set(BENCHMARKS)
        if unknown:
            print(f"--skip: no benchmark {', '.join(sorted(unknown))}", file=sys.stderr)
            return 1
        chosen = tuple(module for module in BENCHMARKS if module not in skipped)
        extra = extra[:at] + extra[at + 2 :]
    flows = {"benchmarks.bench_pipeline", "benchmarks.bench_flow_epochs", "benchmarks.bench_cli"}
    failed, summary = [], []
    with one_server_for_quick_runs("--quick" in extra and bool(flows & set(chosen))):
        for module in chosen:
            run(module, extra, failed, summary)
    print("\n=== all benchmarks in one table")
    print("\n".join(summary))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run(module: str, extra: list[str], failed: list[str], summary: list[str]) -> None:
    """One benchmark in a child process: its output, its table rows, its failure."""
    print(f"\n=== {module} {' '.join(extra)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", module, *extra], check=False, capture_output=True, text=True
    )
    print(result.stdout, end="", flush=True)
    summary += table_lines(result.stdout)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        failed.append(module)


if __name__ == "__main__":
    sys.exit(main())
