"""Benchmarks, run on demand (`make bench`): each figure beside the reference, same run."""
