"""Training runs: run folders and keys, the per-epoch steps, sweeps."""
