"""Every benchmark, one after the other: `make bench` (full data) or `make bench-quick`."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "benchmarks.bench_train",
    "benchmarks.bench_ingest",
    "benchmarks.bench_augment",
    "benchmarks.bench_pipeline",
    "benchmarks.bench_sweep",
)


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module} {' '.join(extra)}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *extra], check=False).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
