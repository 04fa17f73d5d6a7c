"""`mnist-housekeeping`: the weekly retention pass (`mnistnn gc --apply` as a flow).

The `housekeeping` deployment runs it every Sunday; each deletion and each run folder skipped
because a running flow holds its lock is logged, and the plan with sizes is the run's result.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.crashes import crashed_if_terminated
from flows.tasks import run_logger
from mnistnn.config import DataPaths
from mnistnn.registry import retention


@flow(name="mnist-housekeeping", log_prints=False, on_failure=[crashed_if_terminated])
def housekeeping(
    data_dir: str = "data",
    apply: bool = True,
    keep: int = 10,
    run_days: float = 7.0,
    prediction_days: float = 90.0,
    cache_days: float = 1.0,
) -> dict[str, Any]:
    """Free what no kept model needs (or, with `apply=false`, only list it)."""
    policy = retention.Policy(keep, run_days, prediction_days, cache_days).check()
    paths = DataPaths.at(data_dir)
    result = (retention.apply if apply else retention.plan)(paths, policy)
    logger = run_logger()
    for line in result.lines(applied=apply):
        logger.info(line)
    return result.to_dict()


__all__ = ["housekeeping"]
