"""Serve `mnist-training/nightly-retrain` from this process with `flow.serve` (no work pool).

Run from the repository root: `mnistnn serve` or `python -m deployments.serve`. Stop it only when
no run is in progress: on SIGTERM, `serve` pauses the schedule and may mark a run Cancelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flows.training import train_pipeline

PREFECT_YAML = Path(__file__).with_name("prefect.yaml")
DEPLOYMENT = "nightly-retrain"


def deployment_spec(name: str = DEPLOYMENT) -> dict[str, Any]:
    """The deployment's entry in prefect.yaml, so both paths share one definition."""
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    for deployment in spec["deployments"]:
        if deployment["name"] == name:
            return dict(deployment)
    raise KeyError(f"{PREFECT_YAML}: no deployment named {name!r}")


def serve() -> None:
    """Serve the deployment with the same schedule, parameters and concurrency as prefect.yaml."""
    spec = deployment_spec()
    schedule = spec["schedules"][0]
    train_pipeline.serve(
        name=spec["name"],
        cron=schedule["cron"],
        parameters=spec["parameters"],
        description=spec["description"],
        tags=spec["tags"],
        global_limit=spec["concurrency_limit"],
    )


if __name__ == "__main__":
    serve()
