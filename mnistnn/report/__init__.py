"""Figures and markdown reports of runs and sweeps."""
