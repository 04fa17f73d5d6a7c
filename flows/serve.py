"""Serve `mnist-training/nightly-retrain` from this process with `flow.serve` (no work pool).

Run from the repository root: `mnistnn serve` or `python -m deployments.serve`; the deployment
itself is defined once, in `deployments/prefect.yaml`, which this reads. Stop it only when
no run is in progress: on SIGTERM, `serve` pauses the schedule and may mark a run Cancelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.schedules import Cron

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
DEPLOYMENT = "nightly-retrain"


def deployment_spec(name: str = DEPLOYMENT) -> dict[str, Any]:
    """The deployment's entry in prefect.yaml, so both paths share one definition."""
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    for deployment in spec["deployments"]:
        if deployment["name"] == name:
            return dict(deployment)
    raise KeyError(f"{PREFECT_YAML}: no deployment named {name!r}")


def serve() -> None:
    """Serve the deployment with the same schedule, parameters and concurrency as prefect.yaml.

    The flow is loaded from its entrypoint in the repository, as the worker loads it: each run
    then starts `python -m prefect.engine` in the repository root. Serving the imported flow
    object instead would cloudpickle its function *by value* into the run's subprocess, where
    the string annotations of `train_pipeline` (`Literal[...]`, under `from __future__ import
    annotations`) no longer resolve and every run fails parameter validation.
    """
    spec = deployment_spec()
    flow = Flow.from_source(source=str(REPO), entrypoint=spec["entrypoint"])
    assert isinstance(flow, Flow)  # called from sync code, from_source returns the flow itself
    flow.serve(
        name=spec["name"],
        schedules=[
            Cron(
                schedule["cron"],
                timezone=schedule.get("timezone", "UTC"),
                active=schedule.get("active", True),
            )
            for schedule in spec["schedules"]
        ],
        parameters=spec["parameters"],
        description=spec["description"],
        tags=spec["tags"],
        global_limit=spec["concurrency_limit"],
    )


if __name__ == "__main__":
    serve()
