"""Prefect flows over the mnistnn library: thin tasks that call it, log, and return paths."""
