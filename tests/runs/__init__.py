"""Tests of `mnistnn.runs`."""
