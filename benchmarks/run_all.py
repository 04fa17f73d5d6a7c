"""Every benchmark, one after the other, then one table of all their figures.

`make bench` (full data) or `make bench-quick` (a tiny slice, to check that they run).
"""

from __future__ import annotations

import subprocess
import sys

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


def main() -> int:
    extra = sys.argv[1:]
    failed, summary = [], []
    for module in BENCHMARKS:
        print(f"\n=== {module} {' '.join(extra)}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", module, *extra], check=False, capture_output=True, text=True
        )
        print(result.stdout, end="", flush=True)
        summary += table_lines(result.stdout)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            failed.append(module)
    print("\n=== all benchmarks in one table")
    print("\n".join(summary))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
