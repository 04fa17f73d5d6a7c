"""Tests of `mnistnn.cli`."""
