"""The library half of the command line: commands that need no Prefect (ingest, models, ...).

The console script `mnistnn` is `flows.cli.main:main`, which adds the flow-running commands
(train, sweep, serve, score, watch) to this parser; `python -m mnistnn.cli` runs the library
commands alone.
"""
